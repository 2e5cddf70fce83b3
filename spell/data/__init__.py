"""Data: the cluster file format, loading and building the corpus, the synthetic corpus, labelled QA files."""
