#!/usr/bin/env bash
# Makes the demo assets from photos bundled with scikit-image (no downloads):
#   assets/demo.jpg  the "coffee" photo (600x400 JPEG)
#   assets/demo.mp4  4 s, 640x360, 25 fps H.264: a cat, an astronaut's face and a ball moving
#                    over the "motorcycle" photo
# Needs the ffmpeg CLI and a Python with scikit-image (default: the project venv; override
# with PYTHON=...). Run from anywhere: scripts/make_assets.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-$HOME/.cache/pixelrefer-studio/venv/bin/python}
DATA=$("$PY" -c 'import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), "data"))')
for f in coffee.png chelsea.png astronaut.png motorcycle_left.png; do
    [ -f "$DATA/$f" ] || { echo "missing $DATA/$f (pip install scikit-image)" >&2; exit 1; }
done
mkdir -p assets
FF=(ffmpeg -hide_banner -nostdin -loglevel error -y)

"${FF[@]}" -i "$DATA/coffee.png" -map_metadata -1 -q:v 3 -fflags +bitexact assets/demo.jpg

# Background: the motorcycle photo, cropped to 16:9. Objects: the cat's face, the astronaut's
# face and an orange ball (a circle drawn with geq), each on its own path.
"${FF[@]}" \
    -loop 1 -framerate 25 -i "$DATA/motorcycle_left.png" \
    -loop 1 -framerate 25 -i "$DATA/chelsea.png" \
    -loop 1 -framerate 25 -i "$DATA/astronaut.png" \
    -f lavfi -i "color=c=0xF08020:s=72x72:r=25" \
    -filter_complex "
        [0]scale=640:360:force_original_aspect_ratio=increase,crop=640:360,format=yuv420p[bg];
        [1]crop=300:240:100:20,scale=150:120[cat];
        [2]crop=180:200:170:20,scale=90:100[face];
        [3]format=yuva420p,geq=lum='lum(X,Y)':cb='cb(X,Y)':cr='cr(X,Y)':a='255*lt(hypot(X-35.5,Y-35.5),35)'[ball];
        [bg][cat]overlay=x='10+t*110':y='225-45*sin(t*2)':eval=frame[a];
        [a][face]overlay=x='520-t*110':y='20+t*45':eval=frame[b];
        [b][ball]overlay=x='284+180*cos(t*2.2)':y='144+100*sin(t*2.2)':eval=frame,format=yuv420p[v]" \
    -map "[v]" -t 4 -r 25 -c:v libx264 -preset slow -crf 24 -g 50 -bf 2 \
    -movflags +faststart -fflags +bitexact -flags:v +bitexact assets/demo.mp4

ls -l assets/demo.jpg assets/demo.mp4
