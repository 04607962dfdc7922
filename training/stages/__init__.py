"""The two training stages: run-time (DDP, seeds, schedule, checkpoints, log), options, the model
config, the tower stage (stage 1) and the program stage (stage 2, the `train` command)."""
