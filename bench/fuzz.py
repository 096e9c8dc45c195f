"""Fuzz the loaders through the CLIs: mutated wavs, images, model files and feature-cache entries,
the same bytes under many names, cut files of every audio container, constant signals and outputs
aimed at inputs, each run as its own `speech`/`signature`/`inkvoice` process with a timeout and a
memory cap; prints a table of outcomes (answer, clean refusal, wrong answer, traceback, hang, crash,
data loss) and the peak memory.

    python bench/fuzz.py [--per-loader 500] [--jobs 2] [--timeout 60] [--memory-mb 3000] [--seed 0]
                         [--loaders wav,image,model,cache,names,containers,constant,outputs,nonsignature,
                                    poison,bomb] [--show 5] [--models FOLDER]

Needs only the project's own sample data (data/speech, data/signatures). A "wrong answer" is an
answer where the truth is known: a file that must be refused (audio cut inside its data, a
clip too short to hold a word, a NaN threshold, an all-zero filterbank) but was answered, a
damaged model file answering differently from the intact one, invalid JSON on stdout, a
damaged cache giving any other output than a run without it, the same bytes under another name
(or from a cache another name filled) answered otherwise than under the first, a word heard in
a constant signal, a "genuine" verdict for a picture that is no signature (or a signature turned,
tiled or set beside another's) or the enrolment of a reference set holding one. "Data loss": a
run replaced or removed a file it was reading (a model, a recording, a user's file in the cache
folder).
"""

import argparse
import io
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("answer", "clean refusal", "wrong answer", "traceback", "hang", "crash", "data loss")


@dataclass
class Case:
    """One fuzzed run: what was done to the input, the command, and what the truth is."""

    loader: str
    mutation: str
    argv: list
    env: dict = field(default_factory=dict)
    expected: str | None = None  # the exact stdout a right answer gives
    must_refuse: bool = False
    must_be_unknown: bool = False  # answered "unknown" or refused; any other answer is wrong
    must_not_accept: bool = False  # a "genuine" verdict or an enrolment is wrong (forged or refused is right)
    memory_mb: int | None = None  # this run's own memory cap (default: the command line's)
    prepare: object = None  # called (in the worker thread) before the run
    answer: list | None = None  # the JSON records a right answer gives, file names aside
    victim: Path | None = None  # a file the run must leave exactly as it was
    outcome: str = ""
    detail: str = ""


def _command(name):
    return [str(Path(sys.executable).parent / name)]


def limit_resources(memory_bytes):
    def apply():
        os.setsid()  # its own process group, so a hang is killed with its workers
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_case(case, timeout, memory_bytes):
    if case.prepare is not None:
        case.prepare()
    kept = case.victim.read_bytes() if case.victim is not None else None
    _run(case, timeout, memory_bytes)
    if kept is not None and (not case.victim.is_file() or case.victim.read_bytes() != kept):
        case.outcome, case.detail = "data loss", f"{case.victim.name} replaced or removed ({case.outcome})"
    return case


def _run(case, timeout, memory_bytes):
    env = {**os.environ, "MPLBACKEND": "Agg", **case.env}
    memory_bytes = memory_bytes if case.memory_mb is None else case.memory_mb * 2**20
    process = subprocess.Popen(case.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               preexec_fn=limit_resources(memory_bytes), stdin=subprocess.DEVNULL)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.communicate()
        case.outcome, case.detail = "hang", f"no answer within {timeout} s"
        return case
    stdout, stderr = stdout.decode(errors="replace"), stderr.decode(errors="replace")
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if "Traceback (most recent call last)" in stderr:
        case.outcome, case.detail = "traceback", lines[-1] if lines else ""
    elif process.returncode < 0 or "MemoryError" in stderr:
        case.outcome, case.detail = "crash", f"exit {process.returncode}: {lines[-1] if lines else ''}"
    elif process.returncode == 1 and not stdout.strip() and "Error:" in stderr and case.loader != "cache entry":
        # Refusing the whole input is right for a damaged file; a damaged cache must never cost the answer.
        case.outcome, case.detail = "clean refusal", lines[-1] if lines else ""
    elif process.returncode == 0 or (case.expected is not None and process.returncode == 1):
        # Exit 1 with answers: a batch in which some files were refused.
        wrong = _wrong(case, stdout)
        if wrong:
            case.outcome, case.detail = "wrong answer", wrong
        elif process.returncode == 0:
            case.outcome = "answer"
        else:
            case.outcome = "clean refusal" if "Error:" in stderr else "crash"
    elif "Error:" in stderr:
        case.outcome, case.detail = "clean refusal", lines[-1] if lines else ""
    else:
        case.outcome, case.detail = "crash", f"exit {process.returncode} without a message"
    return case


def _wrong(case, stdout):
    for line in stdout.splitlines() if "--json" in case.argv else []:
        try:
            json.loads(line, parse_constant=lambda constant: (_ for _ in ()).throw(ValueError(constant)))
        except ValueError:
            return f"not JSON: {line[:80]}"
    if case.expected is not None and stdout != case.expected:
        return f"stdout differs from the truth: {stdout[:100]!r}"
    if case.must_refuse and stdout.strip():
        return f"answered where a refusal is due: {stdout.strip()[:100]}"
    if case.must_be_unknown and any(json.loads(line).get("label") != "unknown" for line in stdout.splitlines()):
        return f"a word answered where no speech is: {stdout.strip()[:100]}"
    if case.must_not_accept:
        for line in stdout.splitlines():
            record = json.loads(line)
            if record.get("verdict") == "genuine" or record.get("enrolled") is True:
                return f"accepted where it must not be: {line[:120]}"
    if case.answer is not None and _without_files(stdout) != case.answer:
        return f"another answer than the same bytes under another name: {stdout.strip()[:100]}"
    return ""


def _without_files(stdout):
    return [{key: value for key, value in json.loads(line).items() if key != "file"} for line in stdout.splitlines()]


# --------------------------------------------------------------------------------------------
# Mutations of bytes


def flip(data, rng, count=None, within=None):
    data = bytearray(data)
    end = len(data) if within is None else min(within, len(data))
    for _ in range(count or int(rng.integers(1, 9))):
        data[int(rng.integers(0, end))] ^= int(rng.integers(1, 256))
    return bytes(data)


def truncate(data, rng, low=0, high=None):
    return data[: int(rng.integers(low, high or len(data)))]


def special_files(folder, name):
    """Paths that are not regular files: FIFO, device, folder, link loop, dangling link."""
    made = {}
    fifo = folder / f"{name}.fifo"
    os.mkfifo(fifo)
    made["a FIFO"] = fifo
    zero = folder / f"{name}.zero"
    zero.symlink_to("/dev/zero")
    made["a link to /dev/zero"] = zero
    directory = folder / f"{name}.dir"
    directory.mkdir()
    made["a folder"] = directory
    loop = folder / f"{name}.loop"
    loop.symlink_to(loop)
    made["a link loop"] = loop
    dangling = folder / f"{name}.dangling"
    dangling.symlink_to(folder / "nothing-here")
    made["a dangling link"] = dangling
    return made


# --------------------------------------------------------------------------------------------
# wav


def wav_bytes(samples, rate=8000, subtype="PCM_16", fmt="WAV"):
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def wav_mutations(base, rng, count):
    """(mutation, bytes, must) for ``count`` damaged or odd wavs made from ``base``; ``must`` is
    True (must be refused), False (any clean outcome) or "unknown" (refused or answered
    ``unknown``: silence holds no word, and saying so is as right as refusing)."""
    data_start = base.index(b"data") + 8
    samples = np.frombuffer(base[data_start:], dtype="<i2").astype(np.float32) / 32768
    odd = [
        ("empty file", b"", True),
        ("text named .wav", b"this is not audio\n" * 20, True),
        ("random bytes", rng.bytes(4000), True),
        ("one sample", wav_bytes(samples[:1]), True),
        ("2.8 ms declared at 1 MHz", wav_bytes(samples, rate=1_000_000), True),
        ("float samples near 3e38", wav_bytes(samples * 3e38, subtype="FLOAT"), False),
        ("float NaN samples", wav_bytes(np.where(np.arange(samples.size) % 97 == 0, np.nan, samples), subtype="FLOAT"), True),
        ("float inf samples", wav_bytes(np.where(np.arange(samples.size) == 10, np.inf, samples), subtype="FLOAT"), True),
        ("silence", wav_bytes(np.zeros_like(samples)), "unknown"),
        ("8 channels", wav_bytes(np.tile(samples[:, None], (1, 8))), False),
        ("24-bit", wav_bytes(samples, subtype="PCM_24"), False),
        ("flac", wav_bytes(samples, fmt="FLAC"), False),
        ("ogg", wav_bytes(samples, subtype="VORBIS", fmt="OGG"), False),
        ("a PNG named .wav", (ROOT / "data/signatures/writer1/genuine/01.png").read_bytes(), True),
    ]
    out = list(odd)
    header_fields = [(4, "<I", "RIFF size"), (20, "<H", "format tag"), (22, "<H", "channels"),
                     (24, "<I", "sample rate"), (28, "<I", "byte rate"), (32, "<H", "block align"),
                     (34, "<H", "bits per sample"), (data_start - 4, "<I", "data size")]
    while len(out) < count:
        kind = rng.integers(0, 6)
        if kind == 0:
            cut = int(rng.integers(data_start + 2, len(base) - 2))
            out.append((f"cut inside the data at byte {cut}", base[:cut], True))
        elif kind == 1:
            out.append(("cut inside the header", truncate(base, rng, 0, data_start), True))
        elif kind == 2:
            out.append(("bytes flipped in the header", flip(base, rng, within=data_start), False))
        elif kind == 3:
            out.append(("bytes flipped anywhere", flip(base, rng), False))
        elif kind == 4:
            offset, code, name = header_fields[int(rng.integers(0, len(header_fields)))]
            value = int(rng.choice([0, 1, 2, 3, 255, 65535, 2**31 - 1, 2**32 - 1, int(rng.integers(0, 2**16))]))
            value &= 0xFFFF if code == "<H" else 0xFFFFFFFF
            data = bytearray(base)
            data[offset : offset + struct.calcsize(code)] = struct.pack(code, value)
            # 2^32-1 is the streaming convention for "the data runs to the end of the file".
            must = name == "data size" and len(base) - data_start < value < 2**32 - 1
            out.append((f"header {name} = {value}", bytes(data), must))
        else:
            scale = float(rng.choice([1e-30, 1e30, 3e38]))
            out.append((f"float samples scaled by {scale:g}", wav_bytes(samples * scale, subtype="FLOAT"), False))
    return out[:count]


# --------------------------------------------------------------------------------------------
# images


def image_bytes(array, fmt):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def image_mutations(base, rng, count):
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(base)).convert("L"))
    as_float = grey.astype(np.float32) / 255
    with_nan = as_float.copy()
    with_nan[5, 5] = np.nan
    odd = [
        ("empty file", b""),
        ("text named .png", b"not an image\n" * 30),
        ("random bytes", rng.bytes(5000)),
        ("1x1 image", image_bytes(np.zeros((1, 1), np.uint8), "PNG")),
        ("float TIFF", image_bytes(as_float, "TIFF")),
        ("float TIFF with a NaN pixel", image_bytes(with_nan, "TIFF")),
        ("float TIFF with inf", image_bytes(np.where(as_float < 0.5, np.inf, as_float).astype(np.float32), "TIFF")),
        ("16-bit PNG", image_bytes((grey.astype(np.uint16) * 257), "PNG")),
        ("RGBA PNG", image_bytes(np.dstack([grey] * 3 + [np.full_like(grey, 128)]), "PNG")),
        ("blank page", image_bytes(np.full_like(grey, 255), "PNG")),
        ("all ink", image_bytes(np.zeros_like(grey), "PNG")),
        ("JPEG", image_bytes(grey, "JPEG")),
        ("BMP", image_bytes(grey, "BMP")),
        ("GIF", image_bytes(grey, "GIF")),
        ("a wav named .png", wav_bytes(np.zeros(800, np.float32))),
    ]
    out = list(odd)
    ihdr = base.index(b"IHDR") + 4
    while len(out) < count:
        kind = rng.integers(0, 5)
        if kind == 0:
            out.append(("truncated", truncate(base, rng, 0)))
        elif kind == 1:
            out.append(("bytes flipped in the header", flip(base, rng, within=64)))
        elif kind == 2:
            out.append(("bytes flipped anywhere", flip(base, rng)))
        elif kind == 3:
            data = bytearray(base)
            width, height = (int(rng.choice([0, 1, 65535, 10**6, 2**31 - 1])) for _ in range(2))
            data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
            out.append((f"PNG header says {width}x{height}", bytes(data)))
        else:
            data = bytearray(base)
            data[ihdr + 8 : ihdr + 10] = bytes([int(rng.choice([1, 2, 4, 16, 3, 0])), int(rng.choice([0, 2, 3, 4, 6, 7]))])
            out.append(("PNG bit depth / colour type changed", bytes(data)))
    return out[:count]


# --------------------------------------------------------------------------------------------
# what a signature verifier must never accept, and images that cost much to decode


def _draw(size, rng, kind):
    """A white page of ``size`` (rows, columns) holding a picture of ``kind`` that is no signature."""
    from PIL import Image, ImageDraw

    rows, columns = size
    page = Image.new("L", (columns, rows), 255)
    draw = ImageDraw.Draw(page)
    width = int(rng.integers(1, 4))
    if kind == "grid":
        step = int(rng.integers(4, 30))
        for x in range(0, columns, step):
            draw.line([(x, 0), (x, rows)], fill=0, width=width)
        for y in range(0, rows, step):
            draw.line([(0, y), (columns, y)], fill=0, width=width)
    elif kind == "noise":
        return (rng.random(size) * 255).astype(np.uint8)
    elif kind == "salt and pepper":
        return np.where(rng.random(size) < rng.uniform(0.02, 0.5), 0, 255).astype(np.uint8)
    elif kind == "ruled rows":
        top = int(rng.integers(0, rows // 2))
        for y in range(top, min(rows, top + 2 * int(rng.integers(1, 20))), 2):
            draw.line([(0, y), (columns, y)], fill=0, width=1)
    elif kind == "text block":
        for y in range(5, rows - 8, int(rng.integers(8, 16))):
            x = 5
            while x < columns - 10:
                w = int(rng.integers(3, 10))
                draw.rectangle([x, y, x + w, y + int(rng.integers(3, 7))], fill=0)
                x += w + int(rng.integers(2, 6))
    elif kind == "solid blob":
        box = sorted(rng.integers(0, columns, 2)), sorted(rng.integers(0, rows, 2))
        draw.ellipse([box[0][0], box[1][0], box[0][1] + 12, box[1][1] + 12], fill=0)
    elif kind == "checkerboard":
        step = int(rng.integers(2, 20))
        y, x = np.indices(size)
        return np.where(((y // step) + (x // step)) % 2 == 0, 0, 255).astype(np.uint8)
    elif kind == "straight lines":
        for _ in range(int(rng.integers(1, 30))):
            draw.line([tuple(rng.integers(0, columns, 1)) + tuple(rng.integers(0, rows, 1)),
                       tuple(rng.integers(0, columns, 1)) + tuple(rng.integers(0, rows, 1))], fill=0, width=width)
    elif kind == "smooth shading":
        y, x = np.indices(size)
        return (127 + 120 * np.sin(x / rng.uniform(3, 40)) * np.cos(y / rng.uniform(3, 40))).astype(np.uint8)
    elif kind == "frame":
        draw.rectangle([2, 2, columns - 3, rows - 3], outline=0, width=width)
    return np.asarray(page)


NON_SIGNATURES = ("grid", "noise", "salt and pepper", "ruled rows", "text block", "solid blob", "checkerboard",
                  "straight lines", "smooth shading", "frame")


def _transformed(rng, own, others):
    """(description, picture): the enrolled writer's signature, or another's, changed far beyond any genuine one.

    Turned sideways, in white on black, tiled, stacked, or set beside another writer's: none is
    a genuine signature of the writer. Changes a model may judge either way, since they stay
    within what signatures look like (a mirrored loop, another writer's single signature, a
    genuine signature with strokes over it), are accuracy questions (bench/signature_accuracy.py
    measures them as forgeries) and are not drawn here.
    """
    from PIL import Image

    def load(path):
        return np.asarray(Image.open(path).convert("L"))

    base = load(own[int(rng.integers(len(own)))])
    other = load(others[int(rng.integers(len(others)))])
    kind = int(rng.integers(0, 6))
    if kind == 0:
        turns = int(rng.choice([1, 3]))
        return f"own signature turned {90 * turns} degrees", np.rot90(base, turns)
    if kind == 1:
        return "own signature in white on black", 255 - base
    if kind == 2:
        copies = int(rng.integers(2, 4))
        return f"own signature {copies} times side by side", np.concatenate([base] * copies, axis=1)
    if kind == 3:
        return "own signature twice, one above the other", np.concatenate([base, base], axis=0)
    if kind == 4:
        return "another writer's signature twice side by side", np.concatenate([other, other], axis=1)
    height = min(base.shape[0], other.shape[0])
    return "own and another's signature side by side", np.concatenate([base[:height], other[:height]], axis=1)


def nonsignature_images(rng, count, own, others):
    """(mutation, PNG or JPEG bytes) of pictures no verifier may call a genuine signature of the writer of ``own``."""
    out = []
    while len(out) < count:
        if rng.random() < 0.5:
            kind = NON_SIGNATURES[int(rng.integers(len(NON_SIGNATURES)))]
            size = (int(rng.integers(60, 400)), int(rng.integers(120, 800)))
            mutation, picture = kind, _draw(size, rng, kind)
        else:
            mutation, picture = _transformed(rng, own, others)
        fmt = "JPEG" if rng.random() < 0.2 else "PNG"
        out.append((f"{mutation} ({fmt})", image_bytes(np.ascontiguousarray(picture), fmt)))
    return out


def decode_bombs(rng, count):
    """(mutation, bytes): small files of large images in every mode and format read, near and over the limits."""
    from PIL import Image, ImageDraw

    plans = [("PNG", "RGBA"), ("PNG", "RGB"), ("PNG", "L"), ("PNG", "I;16"), ("PNG", "P"), ("PNG", "1"),
             ("TIFF", "F"), ("TIFF", "I"), ("TIFF", "RGB"), ("JPEG", "L"), ("JPEG", "RGB"), ("GIF", "L"),
             ("WEBP", "RGB")]
    out = []
    while len(out) < count:
        fmt, mode = plans[int(rng.integers(len(plans)))]
        side = int(rng.choice([4000, 5000, 6324, 7000])) if fmt != "WEBP" else int(rng.choice([4000, 6324, 12000]))
        white = {"RGBA": (255, 255, 255, 255), "RGB": (255, 255, 255), "F": 1.0, "I": 65535, "I;16": 65535}.get(mode, 255)
        image = Image.new(mode, (side, side), white)
        ImageDraw.Draw(image).line([(side // 10, side // 2), (side * 9 // 10, side // 2 + side // 20)],
                                   fill={"RGBA": (0, 0, 0, 255), "RGB": (0, 0, 0)}.get(mode, 0), width=side // 150)
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        del image
        out.append((f"{side}x{side} {mode} {fmt} ({len(buffer.getvalue()) // 1024} KB)", buffer.getvalue()))
    return out


def crafted_signature_fields():
    """(place, value) of signature model settings out of their bounds: each must be refused at load."""
    return [(("verifier", "writer_model", "max_epochs"), 10**9), (("verifier", "writer_model", "hidden_sizes"), [10**7]),
            (("verifier", "calibration", "weight"), 1e308), (("verifier", "calibration", "centre"), -1e308),
            (("verifier", "threshold"), 1e300), (("verifier", "domain"), None),
            (("verifier", "domain", "input_limits"), [1e308]), (("verifier", "domain", "margin"), 1e9)]


def failsafe_cases(loaders, work, per_loader, rng, signature_model, store):
    """Cases of the "nonsignature", "poison" and "bomb" loaders (see ``main``'s help)."""
    cases = []
    samples = ROOT / "data/signatures"
    genuine = sorted((samples / "writer5/genuine").glob("*.png"))
    others = sorted(path for path in samples.glob("writer*/genuine/*.png") if path.parent.parent.name != "writer5")
    verify = [*_command("signature"), "verify", str(signature_model), "--writer", "writer5", "--store", str(store),
              "--json", "--no-cache"]
    if "nonsignature" in loaders:
        folder = work / "nonsignature"
        folder.mkdir()
        # the enrolled writer's own genuine signatures that are not references may be turned, mirrored, tiled
        for index, (mutation, data) in enumerate(nonsignature_images(rng, per_loader, genuine[6:], others)):
            path = folder / f"{index}.png"
            path.write_bytes(data)
            cases.append(Case("nonsignature", mutation, [*verify, str(path)], must_not_accept=True))
    if "poison" in loaders:
        folder = work / "poison"
        folder.mkdir()
        for index, (mutation, data) in enumerate(nonsignature_images(rng, 4 * per_loader, genuine, others)):
            if " signature" in mutation:
                continue  # transformed signatures are judged at verification; here: what is no signature at all
            if len([case for case in cases if case.loader == "poison"]) >= per_loader:
                break
            path = folder / f"{index}.png"
            path.write_bytes(data)
            references = [genuine[int(i)] for i in rng.choice(len(genuine), size=5, replace=False)]
            argv = [*_command("signature"), "enroll", str(signature_model), "--writer", "writer5",
                    "--store", str(folder / f"{index}.sqlite"), "--json", "--no-cache", *map(str, references), str(path)]
            cases.append(Case("poison", f"5 genuine references and {mutation}", argv, must_not_accept=True))
    if "bomb" in loaders:
        folder = work / "bomb"
        folder.mkdir()
        for index, (mutation, data) in enumerate(decode_bombs(rng, per_loader)):
            path = folder / f"{index}.png"
            path.write_bytes(data)
            cases.append(Case("bomb", mutation, [*verify, str(path)], memory_mb=1000))
    return cases


# --------------------------------------------------------------------------------------------
# model files


def _entries(payload):
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _pack(entries):
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    return buffer.getvalue()


def _with_metadata(payload, change):
    entries = _entries(payload)
    document = json.loads(str(entries["metadata"]))
    change(document)
    entries["metadata"] = np.array(json.dumps(document))
    return _pack(entries)


def _json_value(rng, depth=0):
    """A JSON value of any type: what a hand-edited or crafted field may hold."""
    kind = int(rng.integers(0, 9 if depth < 2 else 7))
    if kind == 7:
        return [_json_value(rng, depth + 1)]
    if kind == 8:
        return {"x": _json_value(rng, depth + 1)}
    return [None, True, int(rng.integers(-5, 10**6)), float(rng.normal() * 10), "0.5", "", 10**12][kind]


def _places(value, prefix=()):
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            if key != "records":
                yield from _places(child, (*prefix, key))
    elif isinstance(value, list) and len(value) < 20:
        for index, child in enumerate(value):
            yield from _places(child, (*prefix, index))


def _set(document, place, value):
    target = document
    for key in place[:-1]:
        target = target[key]
    target[place[-1]] = value


def _npy_header(shape, dtype="<f4"):
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def _zip_with(payload, name, data, compress=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(payload)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            if info.filename != name:
                target.writestr(info, source.read(info))
        target.writestr(zipfile.ZipInfo(name), data, compress_type=compress)
    return buffer.getvalue()


def model_mutations(base, rng, count, refuse_fields):
    """(mutation, bytes, kind) with kind "same" (a damaged copy: same answer or refusal),
    "refuse" (must be refused) or "any" (any clean outcome)."""
    document = json.loads(str(_entries(base)["metadata"]))
    places = list(_places(document))
    arrays = [key for key in _entries(base) if key != "metadata"]
    odd = [
        ("'models': []", _with_metadata(base, lambda d: d.update(models=[])), "refuse"),
        ("format_version 1.0", _with_metadata(base, lambda d: d.update(format_version=1.0)), "same"),
        ("format_version '1'", _with_metadata(base, lambda d: d.update(format_version="1")), "refuse"),
        ("format_version 2", _with_metadata(base, lambda d: d.update(format_version=2)), "refuse"),
        ("100,000-deep metadata", _pack({**_entries(base), "metadata": np.array("[" * 100_000 + "]" * 100_000)}), "refuse"),
        ("a 10^12 shape in an npy header", _zip_with(base, f"{arrays[0]}.npy", _npy_header((10**12,))), "refuse"),
        ("a zip bomb member", _zip_with(base, "array/bomb.npy", _npy_header((300 * 2**20,), "|u1") + bytes(300 * 2**20),
                                        zipfile.ZIP_DEFLATED), "refuse"),
        ("an extra member", _zip_with(base, "array/extra.npy", _npy_header((2,)) + bytes(8)), "refuse"),
        ("an object array", _zip_with(base, f"{arrays[0]}.npy", _npy_header((2,), "|O") + bytes(16)), "refuse"),
        ("a plain .npy", _npy_header((3,)) + bytes(12), "refuse"),
        ("text named .npz", b"not a model\n" * 10, "refuse"),
        ("empty file", b"", "refuse"),
    ]
    for field_path, value in refuse_fields:
        odd.append((f"{'.'.join(map(str, field_path))} = {value!r}",
                    _with_metadata(base, lambda d, p=field_path, v=value: _set(d, p, v)), "refuse"))
    for key in arrays:
        entries = _entries(base)
        if entries[key].dtype.kind == "f" and entries[key].size:
            broken = entries[key].copy()
            broken.flat[0] = np.nan
            odd.append((f"NaN in {key}", _pack({**entries, key: broken}), "refuse"))
    out = list(odd)
    while len(out) < count:
        kind = rng.integers(0, 5)
        if kind == 0:
            out.append(("bytes flipped", flip(base, rng), "same"))
        elif kind == 1:
            out.append(("truncated", truncate(base, rng, 0), "same"))
        elif kind == 2:
            place = places[int(rng.integers(0, len(places)))]
            value = _json_value(rng)
            out.append((f"metadata {'.'.join(map(str, place))} = {value!r}"[:90],
                        _with_metadata(base, lambda d, p=place, v=value: _set(d, p, v)), "any"))
        elif kind == 3:
            key = arrays[int(rng.integers(0, len(arrays)))]
            entries = _entries(base)
            shape = tuple(int(n) for n in rng.integers(0, 5, size=int(rng.integers(0, 3))))
            entries[key] = np.zeros(shape, dtype=str(rng.choice(["float32", "float64", "int64", "U3"])))
            out.append((f"{key} replaced by a {entries[key].dtype} array of shape {shape}", _pack(entries), "any"))
        else:
            key = arrays[int(rng.integers(0, len(arrays)))]
            entries = _entries(base)
            del entries[key]
            # A network's arrays are required; a pipeline's extra arrays may be optional (the mel
            # filterbank is rebuilt from the settings, the background sample is optional).
            out.append((f"{key} removed", _pack(entries), "refuse" if key.startswith("model/") else "any"))
    return out[:count]


# --------------------------------------------------------------------------------------------
# set-up: models trained on the sample data, ground-truth outputs


def setup(work, models, timeout):
    """Models trained on the sample data (kept in ``models`` for later runs), and an enrolment store."""
    models.mkdir(parents=True, exist_ok=True)
    speech_model, signature_model = models / "speech.npz", models / "signature.npz"
    env = {**os.environ, "INKVOICE_CACHE": str(work / "setup-cache")}
    if not speech_model.exists():
        subprocess.run([*_command("speech"), "train", str(ROOT / "data/speech"), "-o", str(speech_model), "--epochs", "5",
                        "--copies", "0", "--test-copies", "0", "--quiet"], check=True, capture_output=True, env=env,
                       timeout=timeout * 10)
    if not signature_model.exists():
        subprocess.run([*_command("signature"), "train", str(ROOT / "data/signatures"), "--writers",
                        "writer1,writer2,writer3,writer4", "--refs", "6", "-o", str(signature_model)],
                       check=True, capture_output=True, env=env, timeout=timeout * 20)
    references, _ = signature_files()
    store = work / "store.sqlite"
    subprocess.run([*_command("signature"), "enroll", str(signature_model), "--writer", "writer5", "--store", str(store),
                    "--no-cache", *map(str, references)], check=True, capture_output=True, env=env, timeout=timeout)
    return speech_model, signature_model, store


def truth(argv, env):
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"the intact run failed: {' '.join(argv)}\n{result.stderr}")
    return result.stdout


def speech_clips():
    return sorted((ROOT / "data/speech").glob("*/*.wav"))[::30][:8]


def signature_files():
    genuine = sorted((ROOT / "data/signatures/writer5/genuine").glob("*.png"))
    return genuine[:3], [genuine[6], *sorted((ROOT / "data/signatures/writer5/forged").glob("*.png"))[:2]]


def build_cases(loaders, work, per_loader, rng, speech_model, signature_model, store):
    cases = []
    shared_cache = {"INKVOICE_CACHE": str(work / "shared-cache")}
    clips = speech_clips()
    references, queries = signature_files()
    predict = [*_command("speech"), "predict", str(speech_model)]
    compare = [*_command("signature"), "compare", str(signature_model), *map(str, references)]

    def written(folder, name, data):
        path = folder / name
        path.write_bytes(data)
        return path

    if "wav" in loaders:
        folder = work / "wav"
        folder.mkdir()
        specials = special_files(folder, "clip")
        for mutation, path in specials.items():
            cases.append(Case("wav", mutation, [*predict, str(path), "--test-copies", "0", "--json"], shared_cache))
        mutations = wav_mutations(clips[0].read_bytes(), rng, per_loader - len(specials))
        for index, (mutation, data, must) in enumerate(mutations):
            path = written(folder, f"{index}.wav", data)
            cases.append(Case("wav", mutation, [*predict, str(path), "--test-copies", "0", "--json"], shared_cache,
                              must_refuse=must is True, must_be_unknown=must == "unknown"))
    if "image" in loaders:
        folder = work / "image"
        folder.mkdir()
        specials = special_files(folder, "query")
        for mutation, path in specials.items():
            cases.append(Case("image", mutation, [*compare, str(path), "--json"], shared_cache))
        for index, (mutation, data) in enumerate(image_mutations(queries[0].read_bytes(), rng, per_loader - len(specials))):
            path = written(folder, f"{index}.png", data)
            cases.append(Case("image", mutation, [*compare, str(path), "--json"], shared_cache))
    if "model" in loaders:
        folder = work / "model"
        folder.mkdir()
        speech_truth = truth([*predict, str(clips[0]), "--test-copies", "0", "--json"], shared_cache)
        signature_truth = truth([*compare, str(queries[0]), "--json"], shared_cache)
        half = per_loader // 2
        speech_refuse = [(("features", "n_mfcc"), "13"), (("models", "network0", "layer_sizes"), ["78", 256, 10])]
        signature_refuse = [(("verifier", "threshold"), "0.5"), (("verifier", "spread_floor"), None),
                            (("models", "verifier0"), []), *crafted_signature_fields()]
        zero_mel = _pack({**_entries(speech_model.read_bytes()),
                          "array/mel_basis": np.zeros_like(_entries(speech_model.read_bytes())["array/mel_basis"])})
        nan_threshold = _with_metadata(signature_model.read_bytes(), lambda d: d["verifier"].update(threshold=float("nan")))
        plans = [("speech", speech_model, speech_truth, [str(clips[0]), "--test-copies", "0", "--json"], predict[:2],
                  speech_refuse, [("all-zero mel filterbank", zero_mel, "refuse")], half),
                 ("signature", signature_model, signature_truth, [*map(str, references), str(queries[0]), "--json"],
                  compare[:2], signature_refuse, [("NaN threshold", nan_threshold, "refuse")], per_loader - half)]
        for pipeline, model, expected, arguments, command, refuse_fields, extra, n in plans:
            specials = special_files(folder, pipeline)
            for mutation, path in specials.items():
                cases.append(Case("model", f"{pipeline}: {mutation}", [*command, str(path), *arguments], shared_cache))
            mutations = extra + model_mutations(model.read_bytes(), rng, n - len(specials) - len(extra), refuse_fields)
            for index, (mutation, data, kind) in enumerate(mutations):
                path = written(folder, f"{pipeline}-{index}.npz", data)
                cases.append(Case("model", f"{pipeline}: {mutation}", [*command, str(path), *arguments], shared_cache,
                                  expected=expected if kind == "same" else None, must_refuse=kind == "refuse"))
    if "names" in loaders:
        cases += name_cases(work, per_loader, rng, speech_model)
    if "containers" in loaders:
        cases += container_cases(work, per_loader, rng, speech_model)
    if "constant" in loaders:
        cases += constant_cases(work, per_loader, rng, speech_model)
    if "outputs" in loaders:
        cases += output_cases(work, per_loader, rng, speech_model, signature_model)
    if "cache" in loaders:
        labelled = work / "labelled"
        for clip in clips:
            (labelled / clip.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(clip, labelled / clip.parent.name / clip.name)
        evaluate = [*_command("speech"), "evaluate", str(speech_model), str(labelled), "--test-copies", "0", "--json",
                    "--quiet", "--jobs", "1"]
        verify = [*_command("signature"), "verify", str(signature_model), "--writer", "writer5", "--store", str(store),
                  *map(str, queries), "--json", "--jobs", "1"]
        cases += cache_cases(work, per_loader, rng, evaluate, verify)
    cases += failsafe_cases(loaders, work, per_loader, rng, signature_model, store)
    return cases


# --------------------------------------------------------------------------------------------
# answers that must not depend on the name, truncated containers, constant signals, outputs


def _odd_name(rng, index):
    """A file name as users and other tools make them: FSDD-like, spaces, case, unicode, non-UTF-8 bytes."""
    kind = int(rng.integers(0, 7))
    stem = ["clip", f"{int(rng.integers(0, 10))}_me_{int(rng.integers(0, 50))}", "Recording (2)", "r\u00e9sum\u00e9",
            "x" * int(rng.integers(1, 120)), os.fsdecode(bytes(rng.integers(128, 256, size=6).astype(np.uint8))),
            "\u6570\u5b57"][kind]
    return f"{index}-{stem}{rng.choice(['.wav', '.WAV', '.flac', '.ogg', ''])}"


def name_cases(work, per_loader, rng, speech_model):
    """The same bytes under many names, with and without a cache that other names filled: every
    answer (labels, confidences, top 3) must be the one a first run without a cache gave."""
    import soundfile

    folder = work / "names"
    folder.mkdir()
    clips = speech_clips()
    sources = []
    for index in range(4):  # two digits at once: uncertain clips, whose averaged variants decide
        first, _ = soundfile.read(clips[index], dtype="float32")
        second, _ = soundfile.read(clips[-1 - index], dtype="float32")
        n = min(first.size, second.size)
        sources.append(wav_bytes((first[:n] + second[:n]) / 2))
    sources += [clip.read_bytes() for clip in clips[:4]]
    predict = [*_command("speech"), "predict", str(speech_model), "--json", "--top-k", "3", "--test-copies", "8"]
    cases = []
    for source_index, data in enumerate(sources):
        reference = folder / f"reference-{source_index}.wav"
        reference.write_bytes(data)
        answer = _without_files(truth([*predict, str(reference), "--no-cache"], {}))
        for index in range(per_loader // len(sources)):
            path = folder / f"{source_index}" / _odd_name(rng, index)
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            cached = bool(rng.integers(0, 2))
            cases.append(Case("same bytes, other names", f"clip {source_index} as {path.name!r}"
                              f"{' (shared cache)' if cached else ' (--no-cache)'}",
                              [*predict, str(path), *([] if cached else ["--no-cache"])],
                              {"INKVOICE_CACHE": str(work / "names-cache")}, answer=answer))
    return cases


# libsndfile's containers (and encodings) with their length in the header: a cut file must be refused.
# IRCAM, PAF and PVF headers hold no length, so a cut at a frame boundary is a shorter recording,
# byte for byte; there any clean outcome is right.
CONTAINERS = [("WAV", "PCM_16", True), ("WAV", "FLOAT", True), ("WAV", "GSM610", True), ("WAV", "IMA_ADPCM", True),
              ("WAV", "MS_ADPCM", True), ("WAV", "ULAW", True), ("WAVEX", "PCM_16", True), ("WAVEX", "FLOAT", True),
              ("AIFF", "PCM_16", True), ("AIFF", "FLOAT", True), ("AU", "PCM_16", True), ("W64", "PCM_16", True),
              ("RF64", "PCM_16", True), ("NIST", "PCM_16", True), ("CAF", "PCM_16", True), ("VOC", "PCM_16", True),
              ("SVX", "PCM_16", True), ("MAT4", "PCM_16", True), ("MAT5", "PCM_16", True), ("AVR", "PCM_16", True),
              ("WVE", "ALAW", True), ("MPC2K", "PCM_16", True), ("IRCAM", "PCM_16", False), ("PAF", "PCM_16", False),
              ("PVF", "PCM_16", False)]


def container_cases(work, per_loader, rng, speech_model):
    """Recordings in every container libsndfile writes, named .wav, whole (answered) or cut short."""
    import soundfile

    folder = work / "containers"
    folder.mkdir()
    clips = speech_clips()
    predict = [*_command("speech"), "predict", str(speech_model), "--json", "--test-copies", "0"]
    cases = []
    for index in range(per_loader):
        container, subtype, has_length = CONTAINERS[index % len(CONTAINERS)]
        samples, rate = soundfile.read(clips[int(rng.integers(0, len(clips)))], dtype="float32")
        stereo = rng.random() < 0.3
        try:
            data = wav_bytes(np.stack([samples, samples * 0.5], axis=1) if stereo else samples, rate=rate,
                             subtype=subtype, fmt=container)
        except soundfile.LibsndfileError:  # a mono-only container or encoding
            stereo, data = False, wav_bytes(samples, rate=rate, subtype=subtype, fmt=container)
        whole = index % 5 == 0
        if not whole:
            data = data[: int(len(data) * rng.uniform(0.3, 0.97))]
        path = folder / f"{index}.wav"
        path.write_bytes(data)
        label = f"{container} {subtype}{' stereo' if stereo else ''}: " + ("whole" if whole else f"cut at {len(data)} bytes")
        cases.append(Case("truncated containers", label, [*predict, str(path)], {"INKVOICE_CACHE": str(work / "shared-cache")},
                          must_refuse=not whole and has_length))
    return cases


def constant_cases(work, per_loader, rng, speech_model):
    """Constant and drifting signals (DC, a slow ramp, DC under faint hiss): no speech, so answered
    ``unknown`` or refused, at any level, length, sample rate, encoding and file name."""
    folder = work / "constant"
    folder.mkdir()
    predict = [*_command("speech"), "predict", str(speech_model), "--json", "--test-copies", "4"]
    cases = []
    for index in range(per_loader):
        rate = int(rng.choice([8000, 16000, 44100]))
        n = int(rate * rng.uniform(0.15, 5.0))
        level = float(rng.choice([1.0, -1.0, 0.3, -0.3, float(rng.uniform(-1, 1)), 1e-3]))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            samples, what = np.full(n, level), f"constant {level:.3g}"
        elif kind == 1:
            end = float(np.clip(level + rng.uniform(-0.5, 0.5), -1, 1))
            samples, what = np.linspace(level, end, n), f"ramp {level:.3g} to {end:.3g}"
        else:
            samples, what = level + 1e-4 * rng.standard_normal(n), f"constant {level:.3g} with hiss at -80 dB"
        subtype = str(rng.choice(["PCM_16", "FLOAT", "PCM_24", "PCM_U8"]))
        path = folder / f"{_odd_name(rng, index)}.wav"
        path.write_bytes(wav_bytes(np.clip(samples, -1, 1).astype(np.float32), rate=rate, subtype=subtype))
        cases.append(Case("constant signals", f"{what}, {n / rate:.2f} s at {rate} Hz, {subtype}", [*predict, str(path)],
                          {"INKVOICE_CACHE": str(work / "shared-cache")}, must_be_unknown=True))
    return cases


def output_cases(work, per_loader, rng, speech_model, signature_model):
    """Outputs aimed at what a command reads (its model, a recording, an image, a file inside its data
    folder, through links) and the cache clearing a user's folder named like its own: each must be
    refused or leave the file exactly as it was."""
    plans = [
        ("speech", "evaluate --curve-png onto the model", ["evaluate", "{model}", "{speech}", "--curve-png", "{model}"], "{model}"),
        ("speech", "evaluate --curve-png onto a link to the model", ["evaluate", "{model}", "{speech}", "--curve-png", "{link}"], "{model}"),
        ("speech", "evaluate --confusion-png onto a recording", ["evaluate", "{model}", "{speech}", "--confusion-png", "{recording}"], "{recording}"),
        ("speech", "evaluate --confusion-png onto the model", ["evaluate", "{model}", "{speech}", "--confusion-png", "{model}"], "{model}"),
        ("speech", "train -o onto a recording", ["train", "{speech}", "-o", "{recording}", "--epochs", "1"], "{recording}"),
        ("speech", "train -o onto a hard link to a recording", ["train", "{speech}", "-o", "{hard}", "--epochs", "1"], "{recording}"),
        ("speech", "train --init -o onto the model it starts from", ["train", "{speech}", "--init", "{model}", "-o", "{model}", "--epochs", "1"], "{model}"),
        ("speech", "train -o onto an --extra recording", ["train", "{speech}", "--extra", "{extra}", "-o", "{extra_recording}", "--epochs", "1"], "{extra_recording}"),
        ("signature", "evaluate --plot onto the model", ["evaluate", "{signature_model}", "{signatures}", "--plot", "{signature_model}"], "{signature_model}"),
        ("signature", "train -o onto a signature", ["train", "{signatures}", "-o", "{image}"], "{image}"),
        ("inkvoice", "cache clear with a user's 16-hex folder in the cache", ["cache", "clear"], "{thesis}"),
        ("inkvoice", "cache clear with a user's file named like an entry", ["cache", "clear"], "{planted}"),
    ]
    cases = []
    for index in range(per_loader):
        pipeline, mutation, arguments, victim = plans[index % len(plans)]
        case_folder = work / f"outputs-{index}"
        values = {"model": case_folder / "speech.npz", "link": case_folder / "link.npz", "speech": case_folder / "speech",
                  "recording": case_folder / "speech" / "3" / "a.wav", "hard": case_folder / "hard.wav",
                  "extra": case_folder / "extra", "extra_recording": case_folder / "extra" / "3" / "a.wav",
                  "signature_model": case_folder / "signature.npz", "signatures": case_folder / "signatures",
                  "image": case_folder / "signatures" / "writer1" / "genuine" / "01.png",
                  "thesis": case_folder / "cache" / "0123456789abcdef" / "thesis.txt",
                  "planted": case_folder / "cache" / "features" / "0123456789abcdef" / "ab" / ("ab" + "0" * 62 + ".entry")}

        def prepare(case_folder=case_folder, values=values):
            for label in ("3", "7"):
                for where in ("speech", "extra"):
                    (case_folder / where / label).mkdir(parents=True)
                    for name, source in zip("ab", sorted((ROOT / "data/speech" / label).glob("*.wav"))[:2]):
                        shutil.copy(source, case_folder / where / label / f"{name}.wav")
            for writer in ("writer1", "writer2"):
                shutil.copytree(ROOT / "data/signatures" / writer, case_folder / "signatures" / writer)
            shutil.copy(speech_model, values["model"])
            shutil.copy(signature_model, values["signature_model"])
            values["link"].symlink_to(values["model"])
            os.link(values["recording"], values["hard"])
            for planted in (values["thesis"], values["planted"]):
                planted.parent.mkdir(parents=True)
                planted.write_bytes(b"a user's file, not the cache's")

        command = _command(pipeline)
        argv = [*command, *[argument.format(**values) for argument in arguments]]
        cases.append(Case("outputs aimed at inputs", mutation, argv, {"INKVOICE_CACHE": str(case_folder / "cache")},
                          prepare=prepare, victim=Path(victim.format(**values))))
    return cases


def cache_cases(work, per_loader, rng, evaluate, verify):
    """Damaged feature caches: the output must be exactly that of a run without them (the speech
    evaluation's labels and counts, the signature verification's scores to 4 decimals)."""
    cases = []
    runs = {"speech": evaluate, "signature": verify}
    for pipeline, argv in runs.items():
        filled = work / f"cache-{pipeline}"
        expected = truth(argv, {"INKVOICE_CACHE": str(filled)})  # fills the cache: a run without one
        assert truth(argv, {"INKVOICE_CACHE": str(filled)}) == expected  # and read back
        entries = sorted(path for path in filled.rglob("*") if path.is_file())
        n = per_loader // 2 if pipeline == "speech" else per_loader - per_loader // 2
        for index in range(n):
            folder = work / f"cache-{pipeline}-{index}"
            victims = [entries[int(i)] for i in rng.choice(len(entries), size=int(rng.integers(1, 4)), replace=False)]
            kind = int(rng.integers(0, 8))
            description, action = _cache_damage(kind, rng, entries)
            names = ", ".join(victim.name[:12] for victim in victims)

            def prepare(filled=filled, folder=folder, victims=victims, action=action):
                shutil.copytree(filled, folder, symlinks=True)
                for victim in victims:
                    action(folder / victim.relative_to(filled))

            cases.append(Case("cache entry", f"{pipeline}: {description} ({names})", argv, {"INKVOICE_CACHE": str(folder)},
                              expected=expected, prepare=prepare))
    return cases


def _cache_damage(kind, rng, entries):
    def flip_bytes(path):
        path.write_bytes(flip(path.read_bytes(), rng))

    def cut(path):
        data = path.read_bytes()
        path.write_bytes(data[: int(rng.integers(0, len(data)))])

    def swap(path):
        # Another file's (or the whole list's) entry under this name: right form, wrong features.
        path.write_bytes(entries[int(rng.integers(0, len(entries)))].read_bytes())

    def zero_tail(path):
        data = bytearray(path.read_bytes())
        data[-min(16, len(data)) :] = bytes(min(16, len(data)))
        path.write_bytes(bytes(data))

    def nan_tail(path):
        data = bytearray(path.read_bytes())
        data[-4:] = np.float32(np.nan).tobytes()
        path.write_bytes(bytes(data))

    def fifo(path):
        path.unlink()
        os.mkfifo(path)

    def to_zero(path):
        path.unlink()
        path.symlink_to("/dev/zero")

    def to_folder(path):
        path.unlink()
        path.mkdir()

    return [("bytes flipped", flip_bytes), ("truncated", cut), ("replaced by another entry", swap),
            ("values zeroed", zero_tail), ("a NaN written in", nan_tail), ("replaced by a FIFO", fifo),
            ("replaced by a link to /dev/zero", to_zero), ("replaced by a folder", to_folder)][kind]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-loader", type=int, default=500, help="Mutated inputs per loader.")
    parser.add_argument("--jobs", type=int, default=2, help="Runs at once.")
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds before a run counts as a hang.")
    parser.add_argument("--memory-mb", type=int, default=3000, help="Address-space cap of each run (MB).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the mutations.")
    parser.add_argument("--loaders", default="wav,image,model,cache,names,containers,constant,outputs,"
                                              "nonsignature,poison,bomb",
                        help="Which loaders to fuzz. nonsignature: pictures that are no signature, and signatures "
                             "turned, tiled or set beside another's, verified against an enrolled writer (a "
                             "'genuine' is wrong); poison: enrolment of 5 genuine references and one picture that "
                             "is no signature (enrolling is wrong); bomb: small files of large images, run under a "
                             "1000 MB cap.")
    parser.add_argument("--show", type=int, default=5, help="Examples listed per bad outcome.")
    parser.add_argument("--models", help="Folder keeping the two trained models between runs (default: made afresh).")
    arguments = parser.parse_args()
    loaders = arguments.loaders.split(",")
    rng = np.random.default_rng(arguments.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        models = Path(arguments.models) if arguments.models else work / "models"
        speech_model, signature_model, store = setup(work, models, arguments.timeout)
        cases = build_cases(loaders, work, arguments.per_loader, rng, speech_model, signature_model, store)
        print(f"{len(cases)} runs, {arguments.jobs} at a time, timeout {arguments.timeout:g} s, "
              f"memory cap {arguments.memory_mb} MB", file=sys.stderr)
        done = []
        with ThreadPoolExecutor(arguments.jobs) as pool:
            for case in pool.map(lambda case: run_case(case, arguments.timeout, arguments.memory_mb * 2**20), cases):
                done.append(case)
                if len(done) % 100 == 0:
                    print(f"{len(done)} runs done, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"Fuzzing the CLIs: {len(done)} runs in {time.perf_counter() - started:.0f} s, seed {arguments.seed}, "
          f"timeout {arguments.timeout:g} s, memory cap {arguments.memory_mb} MB; peak memory of a run {peak_mb:.0f} MB")
    print()
    print("| loader | runs | " + " | ".join(OUTCOMES) + " |")
    print("|---|---:|" + "---:|" * len(OUTCOMES))
    names = list(dict.fromkeys(case.loader for case in done))
    for name in [*names, "all"]:
        group = [case for case in done if name in ("all", case.loader)]
        counts = [sum(case.outcome == outcome for case in group) for outcome in OUTCOMES]
        label = f"**{name}**" if name == "all" else name
        print(f"| {label} | {len(group)} | " + " | ".join(str(c) for c in counts) + " |")
    for outcome in ("wrong answer", "traceback", "hang", "crash", "data loss"):
        bad = [case for case in done if case.outcome == outcome]
        if bad:
            print(f"\n{outcome}: {len(bad)}")
            seen = set()
            for case in bad:
                key = (case.loader, case.mutation.split(" at byte")[0].split(" = ")[0], case.detail[:60])
                if key in seen:
                    continue
                seen.add(key)
                print(f"- {case.loader}, {case.mutation}: {' '.join(Path(a).name if '/' in a else a for a in case.argv[:2])} "
                      f"... -> {case.detail}")
                if len(seen) >= arguments.show:
                    break


if __name__ == "__main__":
    main()
