"""Looking into a trained network (captum): feature maps, Grad-CAM, attributions, top losses, and their figures.

These modules work on tensors and modules only; what depends on the data (reading a raw input, which attribution
fits it, how it is drawn) is the data kind's (`cnn_zoo.data.kinds`), which calls the renderers here.
"""
