"""The SMPL body: joint list and skeleton, rotation maths, the model's channel layout and
the Motion a dance is returned as."""
