"""Looking into a trained network (captum): feature maps, Grad-CAM, attributions, top losses, and their figures.

`inputs` is the only module that reads a checkpoint's data facts; the others work on tensors and modules.
"""
