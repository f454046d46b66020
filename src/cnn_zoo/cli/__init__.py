"""How a command starts and what it prints: Hydra entry points and console scripts, the config folder,
config checks, the run folder, the log.  The commands themselves are the top-level modules of cnn_zoo."""
