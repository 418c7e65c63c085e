"""The released DAWN checkpoints (LFG_*.pth, DAWN_*.pth, PBNet pose/blink) as our stage checkpoints.

`mapping` maps and checks their state dicts key by key (also used by the golden-vector tests); `conventions`
holds the reference's settings that the imported checkpoints record; `convert` reads the files and writes our
checkpoints plus an ``import.json`` of their sources (the ``dawn-import-dawn`` command).
"""
