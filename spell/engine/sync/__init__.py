"""Weight sync: the learner's weights to every rollout engine after each step, bucket by bucket, in place."""
