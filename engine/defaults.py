"""Generation defaults shared by the API, the command line and the add-on. Plain Python, so
the add-on can read them before torch is installed."""

# The model's time grid, fixed by the weights (engine.body.layout re-exports both): kept here, in
# plain Python, so that the music analysis can run without importing torch.
MODEL_FPS = 30               # the network's frame rate; music features are computed on the same grid
WINDOW_FRAMES = 150          # 5 s windows, as EDGE

DEFAULT_FPS = 30.0          # output frame rate when none is asked for (any rate works)
DEFAULT_STEPS = 20          # sampling steps: 50 DDIM steps scored the same as 20 on validation clips (weights/TRAINING.md)
# How the many-step model steps from noise to a dance: "ddim" (first order) or "dpm2m"
# (DPM-Solver++(2M), Lu et al. 2022: second order along the same ODE, no extra network pass).
# In 20 steps dpm2m scored nearer the real dancers' motion on validation (FID_k 28.7 against 30.8,
# Div_k 8.88 against 8.50; weights/TRAINING.md, "A second-order sampler"); its 10 steps fell short
# of DDIM's 20, so the step count stays. Stochastic steps (SAMPLING_ETA > 0) are DDIM's; a few-step
# student always samples with DDIM, as it was distilled.
SAMPLING_SOLVERS = ("ddim", "dpm2m")
SAMPLING_SOLVER = "dpm2m"
# How stochastic the many-step model's DDIM steps are (eta, Song et al. 2021; 0 = deterministic
# DDIM, 1 = DDPM's ancestral steps). 0.5 made the dances as varied as the real dancers' but less
# real (FID_k) and the network's raw output rougher, so the default stays deterministic
# (weights/TRAINING.md, "Stochastic DDIM steps"). A few-step student always samples with eta 0.
SAMPLING_ETA = 0.0
DEFAULT_GUIDANCE = 2.5      # classifier-free guidance weight, chosen on the validation split
# In the last part of sampling (diffusion steps t <= LATE_GUIDANCE_FROM_T of 1000) the weight is
# capped at LATE_GUIDANCE: strong guidance there only adds jitter (weights/TRAINING.md).
LATE_GUIDANCE = 2.0
LATE_GUIDANCE_FROM_T = 300
# Sigma (frames at MODEL_FPS) of the low-pass on the guidance's push (engine.sampler.diffusion.guided);
# 0 = plain guidance. A band of 2 frames makes the network's raw output 40% less jerky, but the
# finished dances scored no better on the validation split, so the default stays plain
# (weights/TRAINING.md, "guidance in the motion band").
GUIDANCE_LOWPASS_FRAMES = 0.0
# Sampling leaves a little frame-to-frame noise that the third derivative (jerk) magnifies by
# fps^3; a Gaussian of this many seconds on the rotation and root channels removes it while
# keeping the moves (calibrated against the real dances' jerk: weights/TRAINING.md).
SMOOTHING_SECONDS = 0.11
# The few-step student is smoothed a little less: with the teacher's 0.11 s its dances came out
# calmer than the teacher's (jerk 75 against 84, Div_k 7.8 against 8.9 on the validation split);
# 0.09 s brings jerk, speed and Div_k into or near the teacher's seed range there, FID_k staying
# in it; on the open genre set Div_k rose too (8.6 to 9.2) but FID_k went from 29.9 to 31.2.
# A finishing knob chosen on the validation split (weights/TRAINING.md, "A loss on the motion band").
STUDENT_SMOOTHING_SECONDS = 0.09
# Autoguidance (engine.sampler.diffusion.autoguided) from the weights' guide network, when they have one;
# 1 turns it off. Chosen with DEFAULT_GUIDANCE and SMOOTHING_SECONDS on the validation split
# (weights/TRAINING.md): higher gives livelier, more varied dances (Div_k), and past about 2
# they stray from the real ones (FID_k).
DEFAULT_AUTOGUIDANCE = 2.0
MAX_AUTOGUIDANCE = 5.0
# Near frames the sampler in-paints (a regenerated range's kept dance, seed motion, a locked body
# part) autoguidance eases from none on them to its full weight this many frames away. The guide
# network does not read keys, so autoguidance doubled what the key-aware main network makes of
# them: a shoulder set off at 23 rad/s right after a regenerated range's join (weights/TRAINING.md,
# "Autoguidance eased near in-painted runs").
AUTOGUIDANCE_KEYED_TAPER_FRAMES = 15
# "best": the many-step teacher; "fast": its few-step student (engine.sampler.fewstep), about 15x
# faster. The default stays "best": the shipped student is near its teacher on the honest
# evaluation (inside its seed range on 13 of 18 figures) but less varied on the validation split
# (Div_k 8.4 against 8.9; 0.85x the real dancers', where the teacher is on the 0.9x line;
# weights/TRAINING.md, "A loss on the motion band").
DEFAULT_QUALITY = "best"
QUALITIES = ("fast", "best")
# The dancer keeps within this radius (metres) of the start (engine.finishing.rootpath) unless the
# user sets a stage radius. The training dancers' furthest distance from the centre of the floor
# they used: median 3.2 m (quartiles 2.4-4.2 m) over the 68 sequences of tang2018 and JustLMD.
# The dancer curves its travel back from half this radius on (steering, at its own speed); the
# squash used before slowed travel well inside the radius (3 m cut the travel that ballroom is
# made of: Div_k 9.07 against 9.38 at 4 m; weights/TRAINING.md, "Pelvis snaps", "Steering along
# the floor").
FLOOR_RADIUS = 4.0
# The dance styles of the shipped training data ("any" = no style given), for lists shown before
# the weights can be read; the weights' own list (engine.api.available_styles) is the real one.
TRAINING_STYLES = ("any", "chacha", "rumba", "tango", "waltz", "pop")
# Styles the shipped weights learned without their music (JustLMD's pop: motion only). Style
# "any" never draws them with weights that do not record the styles they learned with music
# (engine.sampler.checkpoint.drawable_styles; training records them now). Training reads music
# where a dataset has it: AIST++'s pop has its music (its windows used to drop it by this name).
MOTION_ONLY_STYLES = ("pop",)
# The sampler in-paints joint keys only where a joint is keyed on at least this many seconds of
# consecutive frames (engine.api._inpainting): isolated keys are met by engine.finishing.editing's offsets.
INPAINT_MIN_RUN_SECONDS = 0.1
# Keys of a joint closer together than this (s; about one stepping cycle) pace its motion: an
# animator blocking the dance. The key offsets keep changing through them instead of pausing at
# each (engine.body.curves.offset_curve), and the feet are not re-stepped between them
# (engine.finishing.feet). With a key every 8 frames, paused at each key, the corrections
# shook the body at the keys' rate (jerk 2.4 times the real dancer's; now 1.5).
PACED_KEY_SECONDS = 0.8
# Two keys of a joint count as the same pose (a hold) when they differ by less than this (rad):
# the frames between them hold it (engine.finishing.editing, and a character's bones in the
# add-on's rig_io, written verbatim there).
HOLD_TOLERANCE = 1e-6
HOLD_PLACE_TOLERANCE = 1e-4   # metres: root keys this close are one place (a hold keyed twice stays put)
# Before the first keyed facing or place and after the last, the dance turns over this long to
# face the front on average over what is left, as a dance with no such keys does
# (engine.sampler.facing, engine.finishing.rootpath): held at the key's facing, it faced wherever
# the network drew and the floor's steering turned it from there (QA: a start pose keyed 5 degrees
# off the front, and the dance faced -20, -21, +43 and -7 degrees off it on average, seeds 0-3).
FRONT_AGAIN_SECONDS = 2.0
