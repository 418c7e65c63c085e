"""Real videos -> the clip store (`dawn-preprocess`): decode at 25 fps by timestamp, analyse the face, crop
stable square clips, compute the per-frame signals and write them through the store writer.

Modules: ``decode`` (frames and audio), ``face`` (the face-analysis backend interface and MediaPipe),
``crop`` (face track -> clips and crop boxes), ``signals`` (per-clip arrays in crop coordinates),
``layout`` (which videos, which speaker, which split) and ``run`` (one video end to end, and the whole run).
"""
