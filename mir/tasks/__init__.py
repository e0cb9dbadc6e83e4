"""Tasks: each one file (head, targets, loss, decoding, mir_eval evaluation) plus one YAML."""
