"""Music in: decode a song (any common format or a waveform), compute the model's per-frame
features and find its beats."""
