"""Evaluation tools (not shipped with the extension): the field's dance metrics, the evaluation
and in-betweening reports, the genre song set and the speed benchmark."""
