"""Training tools (not shipped with the extension): datasets and their packing, training,
distillation into a few-step student, the autoguidance guide and reconstruction probes."""
