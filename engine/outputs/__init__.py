"""Dances out: BVH files, a stick-figure preview video, and retargeting onto other
characters' rigs (bone maps, planted feet on the character's proportions)."""
