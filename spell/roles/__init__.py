"""The three roles one policy plays: questioner, responder, verifier (paper §3)."""
