"""After sampling: hold the animator's keys, plant the feet, rebuild turns, keep the dancer
on stage and warp the motion in time so its beats land on the music's."""
