"""Synthetic mammography DICOMs and an RSNA-layout dataset, generated locally.

:func:`write_dicom` encodes any greyscale array with a real codec (JPEG 2000 lossless
via OpenJPEG, lossless JPEG SV1 via libjpeg-turbo, HTJ2K via OpenJPH, or uncompressed);
:func:`make_mammogram` draws a breast on a dark background with texture, a skin line,
a burned-in label, and (for cancer images) a bright lesion a model can learn;
:func:`make_dataset` writes ``train.csv``, ``test.csv`` and the image folders.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import syntax as TS
from ..atomic import atomic_write
from ..resize import resize

MAMMO_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation
ENCODABLE = (TS.EXPLICIT_LE, TS.IMPLICIT_LE, TS.JPEG2000_LOSSLESS, TS.JPEG_LOSSLESS_SV1, TS.HTJ2K_LOSSLESS)


def encode_frame(pixels: np.ndarray, transfer_syntax: str, bits_stored: int) -> bytes:
    """Encode one greyscale frame losslessly for ``transfer_syntax``.

    Args:
        pixels: ``(H, W)`` uint8/uint16/int16 stored values.
        transfer_syntax: one of :data:`ENCODABLE`.
        bits_stored: precision written into the codestream.
    """
    import imagecodecs

    if transfer_syntax in (TS.EXPLICIT_LE, TS.IMPLICIT_LE):
        return np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    if transfer_syntax == TS.JPEG2000_LOSSLESS:
        return imagecodecs.jpeg2k_encode(pixels, level=0, codecformat="J2K", reversible=True, bitspersample=bits_stored)
    if transfer_syntax == TS.HTJ2K_LOSSLESS:
        return imagecodecs.htj2k_encode(pixels, level=0, reversible=True)
    if transfer_syntax == TS.JPEG_LOSSLESS_SV1:
        unsigned = pixels.view(np.uint16 if pixels.dtype.itemsize == 2 else np.uint8) & ((1 << bits_stored) - 1)
        return imagecodecs.jpeg8_encode(unsigned, lossless=True, predictor=1, bitspersample=bits_stored)
    raise ValueError(f"cannot encode transfer syntax {transfer_syntax}; allowed: {', '.join(ENCODABLE)}")


def write_dicom(
    path: str,
    pixels: np.ndarray,
    *,
    transfer_syntax: str = TS.JPEG2000_LOSSLESS,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    window: tuple[Sequence[float], Sequence[float]] | None = None,
    voi_function: str | None = None,
    rescale: tuple[float, float] | None = None,
    patient_id: str = "1",
    image_id: str = "1",
    laterality: str = "L",
    view: str = "CC",
    extra: dict[str, object] | None = None,
) -> str:
    """Write ``pixels`` as a single-frame greyscale DICOM file and return ``path``.

    ``pixels`` dtype decides Bits Allocated and Pixel Representation (int16 → signed).
    ``extra`` sets further elements by keyword (e.g. ``{"VOILUTSequence": seq}``).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, generate_uid

    pixels = np.ascontiguousarray(pixels)
    if pixels.ndim != 2 or pixels.dtype.kind not in "ui" or pixels.dtype.itemsize > 2:
        raise ValueError("pixels must be a 2-D uint8/uint16/int8/int16 array")
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = MAMMO_SOP_CLASS
    sop_uid = generate_uid()
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = UID(transfer_syntax)
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID = MAMMO_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MG"
    ds.PatientID = str(patient_id)
    ds.InstanceNumber = str(image_id)
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    ds.ContentDate = datetime.date.today().strftime("%Y%m%d")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 8 * pixels.dtype.itemsize
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if window is not None:
        centers, widths = window
        ds.WindowCenter = list(centers) if len(centers) > 1 else centers[0]
        ds.WindowWidth = list(widths) if len(widths) > 1 else widths[0]
    if voi_function:
        ds.VOILUTFunction = voi_function
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    frame = encode_frame(pixels, transfer_syntax, bits_stored)
    if transfer_syntax in (TS.EXPLICIT_LE, TS.IMPLICIT_LE):
        ds.PixelData = frame
        ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    else:
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    return atomic_write(path, lambda f: ds.save_as(f, enforce_file_format=True))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    h, w = shape
    ch = max(2, cells)
    cw = max(2, int(round(cells * w / h)))
    return resize(rng.standard_normal((ch, cw)).astype(np.float32), (h, w))


def make_mammogram(
    rng: np.random.Generator, height: int, width: int, *, side: str = "L", cancer: bool = False, label: bool = True
) -> np.ndarray:
    """A mammogram-like float image in [0, 1]: breast bright on a dark background.

    The chest wall is at the left edge for ``side="L"``, at the right for ``"R"``
    (as RSNA images of either breast appear). Cancer images carry a bright round lesion.
    """
    h, w = height, width
    yy = (np.arange(h, dtype=np.float32)[:, None] - h * rng.uniform(0.45, 0.55)) / (h * rng.uniform(0.40, 0.48))
    xx = np.arange(w, dtype=np.float32)[None, :] / (w * rng.uniform(0.55, 0.8))
    r = np.sqrt(xx**2 + yy**2)
    breast = r < 1.0
    thickness = np.clip((1.0 - r) * 6.0, 0.0, 1.0)  # falls off at the skin line
    tissue = 0.45 + 0.08 * _smooth_noise(rng, (h, w), 6) + 0.05 * _smooth_noise(rng, (h, w), 24)
    img = np.where(breast, tissue * (0.55 + 0.45 * thickness), 0.0).astype(np.float32)
    img += rng.normal(0.0, 0.01, size=(h, w)).astype(np.float32)
    if cancer:
        for _ in range(100):  # a spot well inside the breast
            cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.08, 0.4) * w
            if r[int(cy), int(cx)] < 0.75:
                break
        rad = max(2.0, 0.07 * min(h, w))
        ly = (np.arange(h, dtype=np.float32)[:, None] - cy) / rad
        lx = (np.arange(w, dtype=np.float32)[None, :] - cx) / rad
        img += 0.4 * np.exp(-(lx**2 + ly**2) * 1.5).astype(np.float32)
    if label and h >= 32 and w >= 32:  # a burned-in marker far from the chest wall
        lh, lw = max(2, h // 40), max(3, w // 15)
        img[h // 20 : h // 20 + lh, w - w // 10 - lw : w - w // 10] = 0.95
    img = np.clip(img, 0.0, 1.0)
    return img[:, ::-1].copy() if side == "R" else img


@dataclass(frozen=True)
class Machine:
    """How one synthetic ``machine_id`` stores its images."""

    machine_id: int
    site_id: int
    transfer_syntax: str
    bits: int
    photometric: str
    voi_function: str


MACHINES = (
    Machine(21, 1, TS.JPEG_LOSSLESS_SV1, 12, "MONOCHROME1", "LINEAR"),
    Machine(29, 1, TS.JPEG_LOSSLESS_SV1, 16, "MONOCHROME2", "SIGMOID"),
    Machine(48, 2, TS.JPEG2000_LOSSLESS, 12, "MONOCHROME2", "LINEAR"),
    Machine(49, 2, TS.JPEG2000_LOSSLESS, 14, "MONOCHROME1", "SIGMOID"),
    Machine(93, 2, TS.JPEG2000_LOSSLESS, 16, "MONOCHROME2", "LINEAR"),
)


def to_stored(img01: np.ndarray, bits: int, photometric: str) -> tuple[np.ndarray, tuple[float, float]]:
    """Quantise a [0, 1] image to ``bits`` and pick a window that shows the tissue.

    Returns:
        ``(stored values, (center, width))``: uint16 for ``bits`` > 8, else uint8;
        MONOCHROME1 stores the inverse.
    """
    top = (1 << bits) - 1
    stored = np.round(img01 * top).astype(np.uint16 if bits > 8 else np.uint8)
    center, width = 0.5 * top, 0.9 * top
    if photometric == "MONOCHROME1":
        stored = (top - stored).astype(stored.dtype)
        center = top - center
    return stored, (round(center, 1), round(width, 1))


def write_mammogram(
    path: str,
    rng: np.random.Generator,
    machine: Machine,
    *,
    height: int,
    width: int,
    side: str,
    cancer: bool,
    patient_id: str,
    image_id: str,
    view: str,
) -> str:
    """Draw one synthetic mammogram and write it the way ``machine`` stores images."""
    img = make_mammogram(rng, height, width, side=side, cancer=cancer)
    stored, (c, w) = to_stored(img, machine.bits, machine.photometric)
    return write_dicom(
        path,
        stored,
        transfer_syntax=machine.transfer_syntax,
        bits_stored=machine.bits,
        photometric=machine.photometric,
        window=([c], [w]),
        voi_function=machine.voi_function,
        patient_id=patient_id,
        image_id=image_id,
        laterality=side,
        view=view,
    )


TRAIN_COLUMNS = [
    "site_id",
    "patient_id",
    "image_id",
    "laterality",
    "view",
    "age",
    "cancer",
    "biopsy",
    "invasive",
    "BIRADS",
    "implant",
    "density",
    "machine_id",
    "difficult_negative_case",
]
TEST_COLUMNS = [
    "site_id",
    "patient_id",
    "image_id",
    "laterality",
    "view",
    "age",
    "implant",
    "machine_id",
    "prediction_id",
]


def make_dataset(
    out: str,
    *,
    patients: int = 20,
    test_patients: int | None = None,
    height: int = 416,
    width: int = 320,
    seed: int = 0,
    cancer_rate: float = 0.25,
    workers: int = 1,
    machines: Sequence[Machine] = MACHINES,
) -> dict[str, int]:
    """Write an RSNA-layout dataset under ``out``.

    Files: ``train.csv``, ``test.csv`` (Kaggle columns), ``test_labels.csv`` (the
    hidden answers: prediction_id, cancer), ``{train,test}_images/<patient>/<image>.dcm``.
    Every patient has CC and MLO of both breasts; ``cancer_rate`` is per breast.

    Returns:
        Counts: ``{"train_images", "test_images", "positive_breasts"}``.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    test_patients = max(1, patients // 5) if test_patients is None else test_patients
    jobs, rows = [], {"train": [], "test": []}
    image_id = 1000 + int(rng.integers(0, 1000)) * 1000
    for split, n in (("train", patients), ("test", test_patients)):
        for p in range(n):
            pid = str(10000 + (0 if split == "train" else 50000) + p * 7 + int(seed) * 100000)
            m = machines[int(rng.integers(0, len(machines)))]
            age = int(rng.integers(40, 80))
            for side in ("L", "R"):
                cancer = bool(rng.random() < cancer_rate)
                for view in ("CC", "MLO"):
                    image_id += int(rng.integers(1, 50))
                    rel = f"{split}_images/{pid}/{image_id}.dcm"
                    jobs.append(
                        (os.path.join(out, rel), int(rng.integers(0, 2**31)), m, side, cancer, pid, str(image_id), view)
                    )
                    row = dict(
                        site_id=m.site_id,
                        patient_id=pid,
                        image_id=image_id,
                        laterality=side,
                        view=view,
                        age=age,
                        implant=0,
                        machine_id=m.machine_id,
                    )
                    if split == "train":
                        row.update(
                            cancer=int(cancer),
                            biopsy=int(cancer),
                            invasive=int(cancer),
                            BIRADS=0 if cancer else 1,
                            density="B",
                            difficult_negative_case=False,
                        )
                    else:
                        row.update(prediction_id=f"{pid}_{side}", cancer=int(cancer))
                    rows[split].append(row)
    os.makedirs(out, exist_ok=True)
    _run_jobs(jobs, height, width, workers)
    train = pd.DataFrame(rows["train"], columns=TRAIN_COLUMNS)
    test = pd.DataFrame(rows["test"], columns=[*TEST_COLUMNS, "cancer"])  # no test patients: header-only CSVs
    train[TRAIN_COLUMNS].to_csv(os.path.join(out, "train.csv"), index=False)
    test[TEST_COLUMNS].to_csv(os.path.join(out, "test.csv"), index=False)
    labels = test.groupby("prediction_id", sort=True)["cancer"].max().reset_index()
    labels.to_csv(os.path.join(out, "test_labels.csv"), index=False)
    return {
        "train_images": len(train),
        "test_images": len(test),
        "positive_breasts": int(train.groupby(["patient_id", "laterality"])["cancer"].max().sum()),
    }


def _write_job(args) -> str:
    path, seed, m, side, cancer, pid, iid, view, height, width = args
    return write_mammogram(
        path,
        np.random.default_rng(seed),
        m,
        height=height,
        width=width,
        side=side,
        cancer=cancer,
        patient_id=pid,
        image_id=iid,
        view=view,
    )


def _run_jobs(jobs, height: int, width: int, workers: int) -> None:
    args = [j + (height, width) for j in jobs]
    if workers <= 1:
        for a in args:
            _write_job(a)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_write_job, args, chunksize=4))
