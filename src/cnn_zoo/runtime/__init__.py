"""The process around the training: user errors and faults as one line, CPU/thread/memory settings
made by the entry points, DDP under Hydra, atomic writes, Lightning's private API behind one seam."""
