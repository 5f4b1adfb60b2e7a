#!/usr/bin/env bash
# Install a CJK font for Chinese plot labels when Debian's apt is usable; warn (never fail) elsewhere.
# Set MIXPOET_CJK_FONT=/path/to/font.ttf to use a font file of your own instead.
set -u
if [ -n "${MIXPOET_CJK_FONT:-}" ] && [ -f "${MIXPOET_CJK_FONT}" ]; then
  echo "fonts: using MIXPOET_CJK_FONT=${MIXPOET_CJK_FONT}"; exit 0
fi
for f in /usr/share/fonts/truetype/wqy/wqy-microhei.ttc /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc; do
  if [ -f "$f" ]; then echo "fonts: found $f"; exit 0; fi
done
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  echo "fonts: installing fonts-wqy-microhei with apt-get"
  if (apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1 || \
      (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1)); then
    echo "fonts: installed fonts-wqy-microhei"; exit 0
  fi
fi
echo "WARNING: no CJK font installed; Chinese plot labels will show as boxes." >&2
echo "         Install fonts-wqy-microhei / fonts-noto-cjk, or set MIXPOET_CJK_FONT=/path/to/font" >&2
exit 0
