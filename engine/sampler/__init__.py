"""The network and its sampling: the denoiser, DDIM with guidance and in-painting, weights
files, and the choice between a few-step student and its teacher."""
