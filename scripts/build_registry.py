#!/usr/bin/env python
"""Build mixpoet_lib/registry.json from shared/data (SOURCES.md + checksums.sha256 + file sizes).

Usage: python scripts/build_registry.py [--shared PATH] [--out PATH] [--check]

Every key is a path relative to ``shared/data/raw``. Source repository and pinned commit come
from the summary table of SOURCES.md, the path in the source repository from its per-file
tables (when a table has no such column: the path relative to the source folder), sha256 from checksums.sha256 and the
size from the file itself. All values SOURCES.md also states (sha256, bytes) are cross-checked.
``--check`` exits 1 if the committed registry differs from a fresh build (nothing is written).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]

# One short statement of terms per source folder, condensed from SOURCES.md; the quoted phrase
# of each must occur in SOURCES.md so a change of the stated terms is noticed.
TERMS = {
    "mixpoet": (
        "All rights reserved.",
        "All rights reserved (MixPoet README; no LICENSE). Internal research use only, do not "
        "redistribute. Cite Yi et al., MixPoet, AAAI 2020.",
    ),
    "thu-aipoet": (
        "released for academic use only",
        "Academic use only (Datasets README: 'all our datasets are released for academic use "
        "only'; no LICENSE). Cite Guo et al., Jiuge, ACL 2019 Demos.",
    ),
    "chinese-poetry": (
        "MIT License",
        "MIT License, Copyright (c) 2016 JackeyGao (LICENSE). Poems are pre-modern texts collected from the internet.",
    ),
}

SUMMARY_ROW = re.compile(r"^\| `raw/([^/`]+)/` \| https://github\.com/([^/\s]+/[^/\s|]+) \| `([0-9a-f]{40})`")
FILE_ROW = re.compile(r"^\| `(?:raw/)?([^`]+)` \| (?:`([^`]+)` \| )?([\d,]+) \| `([0-9a-f]{64})`")
SUFFIX = re.compile(r"\.(\d+)\.json$")


def group_of(name: str) -> str:
    """Return the registry group of a raw file name."""
    base = name.rsplit("/", 1)[-1]
    if base in ("README.md", "LICENSE"):
        return "docs"
    if name.startswith("mixpoet/cqcf_"):
        return "cqcf"
    if name == "mixpoet/test_inps.txt":
        return "test_inps"
    if name.startswith("thu-aipoet/CCPC/"):
        return "ccpc"
    if name.startswith("thu-aipoet/CRRD/"):
        return "crrd"
    if base.startswith("poet.tang."):
        return "tang"
    if base.startswith("poet.song."):
        return "song"
    raise ValueError(f"no group for raw file {name}")


GROUPS = ("cqcf", "test_inps", "ccpc", "crrd", "tang", "song", "docs")


def sort_key(name: str) -> tuple[int, int, str]:
    """Order names by group, then numeric suffix (poet.tang.0, poet.tang.1000, ...), then name."""
    match = SUFFIX.search(name)
    return (GROUPS.index(group_of(name)), int(match.group(1)) if match else -1, name)


def parse_sources(text: str) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str | None, int, str]]]:
    """Return {folder: (owner/repo, commit)} and {file as written: (source path, bytes, sha256)}."""
    sources: dict[str, tuple[str, str]] = {}
    rows: dict[str, tuple[str | None, int, str]] = {}
    for line in text.splitlines():
        if m := SUMMARY_ROW.match(line):
            sources[m.group(1)] = (m.group(2), m.group(3))
        elif m := FILE_ROW.match(line):
            rows[m.group(1)] = (m.group(2), int(m.group(3).replace(",", "")), m.group(4))
    return sources, rows


def build(shared: Path) -> dict:
    """Build the registry dictionary from the shared data folder."""
    text = (shared / "SOURCES.md").read_text(encoding="utf-8")
    sources, rows = parse_sources(text)
    if set(sources) != set(TERMS):
        raise SystemExit(f"source folders in SOURCES.md {sorted(sources)} != {sorted(TERMS)}")
    for folder, (phrase, _) in TERMS.items():
        if phrase not in text:
            raise SystemExit(f"terms phrase {phrase!r} for {folder} no longer in SOURCES.md")

    files: dict[str, dict] = {}
    for line in (shared / "checksums.sha256").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        sha, rel = line.split(maxsplit=1)
        rel = rel.lstrip("*")
        if not rel.startswith("raw/"):
            raise SystemExit(f"unexpected path in checksums.sha256: {rel}")
        name = rel[len("raw/") :]
        folder, inner = name.split("/", 1)
        repo, commit = sources[folder]
        size = (shared / rel).stat().st_size
        row = rows.get(name) or rows.get(inner)
        if row is None:
            raise SystemExit(f"{name} is in checksums.sha256 but in no table of SOURCES.md")
        src_path = row[0] or inner
        if (row[1], row[2]) != (size, sha):
            raise SystemExit(f"{name}: SOURCES.md says {row[1]} bytes / {row[2]}, found {size} / {sha}")
        files[name] = {
            "group": group_of(name),
            "source": folder,
            "path": src_path,
            "size": size,
            "sha256": sha,
            "url": f"https://raw.githubusercontent.com/{repo}/{commit}/{quote(src_path)}",
        }
    return {
        "about": "Raw data registry, generated by scripts/build_registry.py from shared/data "
        "(SOURCES.md, checksums.sha256, file sizes). Keys are paths under <data>/raw. Do not edit.",
        "sources": {
            folder: {"repo": repo, "commit": commit, "terms": TERMS[folder][1]}
            for folder, (repo, commit) in sorted(sources.items())
        },
        "files": {name: files[name] for name in sorted(files, key=sort_key)},
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "mixpoet_lib" / "registry.json")
    parser.add_argument("--check", action="store_true", help="fail if --out is not up to date")
    args = parser.parse_args(argv)
    blob = json.dumps(build(args.shared), ensure_ascii=False, indent=1) + "\n"
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        ok = current == blob
        print(f"{args.out}: {'up to date' if ok else 'OUT OF DATE'}")
        return 0 if ok else 1
    args.out.write_text(blob, encoding="utf-8")
    print(f"wrote {args.out} ({len(json.loads(blob)['files'])} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
