"""``nionswift-insitu decompose``: PCA / NMF / VCA of a spectrum image file.

    nionswift-insitu decompose --input SI.hspy|.emd|.dm4|.npy|.h5[:DATASET] --output OUT.npz|OUT.hspy
                               --method pca|nmf|vca --components K [--no-poisson] [--clip-negative]
                               [--reconstruct] [--scheduler ADDRESS]

The SI is read by :func:`processing.io.spectrum_images.open_spectrum_image` (RosettaSciIO / h5py / numpy; the
last axis is the energy axis, its calibration gives the eV axis, the first gives the nm pixel size). The output
holds the scree (explained-variance ratio), the component spectra (k, d) with their energy axis, the maps
(k, ny, nx), the denoised SI with ``--reconstruct`` and a JSON summary (method, significant components, notes).
``--scheduler`` runs the PCA on a ``dask.distributed`` scheduler (big SIs; PCA only). Exit code 2 with one
message on bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import typing

import numpy as np

from processing.base import InputError
from processing.decomposition._validate import METHODS
from processing.decomposition.engine import decompose
from processing.decomposition.result import DecompositionResult

__all__ = ["register", "run", "write_result"]


def _split_source(text: str) -> tuple[pathlib.Path, str | None]:
    path = pathlib.Path(os.path.expanduser(text))
    if path.exists() or ":" not in text:
        return path, None
    head, _, dataset = text.rpartition(":")
    return pathlib.Path(os.path.expanduser(head)), dataset or None


def write_result(result: DecompositionResult, path: pathlib.Path) -> pathlib.Path:
    """``.npz`` (arrays + summary JSON) or ``.hspy`` (RosettaSciIO: maps as a calibrated signal stack; the denoised
    SI, when there is one, as an EELS SI in ``<name>_denoised.hspy`` next to it). Returns the main file."""
    ext = path.suffix.lower()
    summary = json.dumps(result.metadata())
    maps = np.moveaxis(result.maps, -1, 0).astype(np.float32)           # (k, ny, nx)
    if ext == ".npz":
        arrays: dict[str, typing.Any] = {
            "scree": result.scree, "components": result.components, "energies_eV": result.energies_eV,
            "maps": maps, "pixel_size_nm": np.asarray(result.pixel_size_nm), "summary": np.asarray(summary)}
        if result.reconstructed is not None:
            arrays["reconstructed"] = result.reconstructed
        np.savez_compressed(path, **arrays)
        return path
    if ext in (".hspy", ".h5"):
        from rsciio.hspy import file_writer
        nm = result.pixel_size_nm
        axes = [{"name": "component", "size": maps.shape[0], "navigate": True},
                {"name": "y", "size": maps.shape[1], "offset": 0.0, "scale": nm, "units": "nm", "navigate": False},
                {"name": "x", "size": maps.shape[2], "offset": 0.0, "scale": nm, "units": "nm", "navigate": False}]
        signal = {"data": maps, "axes": axes,
                  "metadata": {"General": {"title": f"{result.method.upper()} maps"}, "Signal": {"signal_type": ""}},
                  "original_metadata": {"insitu_decomposition": json.loads(summary),
                                        "component_spectra": result.components.tolist(),
                                        "energy_offset_eV": result.energy_offset_eV,
                                        "energy_scale_eV": result.energy_scale_eV},
                  "attributes": {"_lazy": False}, "tmp_parameters": {}, "package_info": {"name": "", "version": ""},
                  "learning_results": {}, "models": {}}
        file_writer(str(path), signal, show_progressbar=False)
        if result.reconstructed is not None:
            e_axis = {"name": "Energy loss", "size": int(result.reconstructed.shape[2]),
                      "offset": result.energy_offset_eV, "scale": result.energy_scale_eV, "units": "eV",
                      "navigate": False}
            si_axes = [{"name": "y", "size": int(result.reconstructed.shape[0]), "offset": 0.0, "scale": nm,
                        "units": "nm", "navigate": True},
                       {"name": "x", "size": int(result.reconstructed.shape[1]), "offset": 0.0, "scale": nm,
                        "units": "nm", "navigate": True}, e_axis]
            denoised = dict(signal, data=result.reconstructed, axes=si_axes,
                            metadata={"General": {"title": f"{result.method.upper()} denoised SI"},
                                      "Signal": {"signal_type": "EELS"}},
                            original_metadata={"insitu_decomposition": json.loads(summary)})
            file_writer(str(denoised_path(path)), denoised, show_progressbar=False)
        return path
    raise InputError(f"output '{path.name}': the format '{ext or '(none)'}' is not supported; use .npz or .hspy.")


def denoised_path(path: pathlib.Path) -> pathlib.Path:
    """Where a ``.hspy`` output's denoised SI goes: ``<name>_denoised<ext>``."""
    return path.with_name(f"{path.stem}_denoised{path.suffix}")


def run(args: argparse.Namespace) -> int:
    from processing.io.spectrum_images import open_spectrum_image
    source, dataset = _split_source(args.input)
    output = pathlib.Path(os.path.expanduser(args.output))
    if output.suffix.lower() not in (".npz", ".hspy", ".h5"):
        raise InputError(f"output '{output.name}': use a .npz or .hspy file name.")
    if not output.parent.exists():
        raise InputError(f"the output folder '{output.parent}' does not exist; create it or choose another path.")
    data, cals, _ = open_spectrum_image(source, dataset=dataset, lazy=True)
    energy, pixel = cals[2], cals[1]
    pixel_nm = float(pixel.scale) * {"nm": 1.0, "µm": 1e3, "um": 1e3, "Å": 0.1, "A": 0.1}.get(pixel.units, 1.0)
    common: dict[str, typing.Any] = dict(n_components=args.components, poisson=not args.no_poisson, energy_offset_eV=float(energy.offset),
                  energy_scale_eV=float(energy.scale), pixel_size_nm=pixel_nm)
    if args.scheduler:
        if args.method != "pca":
            raise InputError(f"--scheduler runs PCA only; got --method {args.method}. Drop --scheduler for NMF/VCA.")
        import importlib
        from processing.decomposition.distributed import decompose_dask
        distributed: typing.Any = importlib.import_module("dask.distributed")
        da: typing.Any = importlib.import_module("dask.array")
        with distributed.Client(args.scheduler) as client:
            result = decompose_dask(data if isinstance(data, da.Array) else da.from_array(np.asarray(data)),
                                    client=client, reconstruct=args.reconstruct, **common)
    else:
        array = np.asarray(data.compute() if hasattr(data, "compute") else data, np.float32)
        result = decompose(array, method=args.method, clip_negative=args.clip_negative,
                           reconstruct=args.reconstruct, **common)
    write_result(result, output)
    print(f"{args.method.upper()}: {result.n_components} components of {result.n_spectra} spectra, "
          f"{result.n_significant} significant; written to {output}"
          + (f" (denoised SI: {denoised_path(output)})" if result.reconstructed is not None
             and output.suffix.lower() != ".npz" else ""))
    for note in result.notes:
        print(f"note: {note}")
    return 0


def register(subparsers: typing.Any) -> None:
    parser = subparsers.add_parser(
        "decompose", help="PCA / NMF / VCA of a spectrum image (scree, component spectra, maps)",
        description="Decompose a spectrum image (y, x, energy) read with RosettaSciIO (HyperSpy, EMD, DM) or "
                    "h5py/numpy: PCA with Poisson weighting, NMF or VCA, the same code as the live analysis.")
    parser.add_argument("--input", required=True, metavar="FILE[:DATASET]", help="the spectrum image")
    parser.add_argument("--output", required=True, metavar="OUT.npz|OUT.hspy")
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--components", required=True, type=int, metavar="K")
    parser.add_argument("--no-poisson", action="store_true", help="no Keenan-Kotula weighting of the PCA")
    parser.add_argument("--clip-negative", action="store_true", help="NMF/VCA: set negative counts to 0")
    parser.add_argument("--reconstruct", action="store_true", help="also write the denoised SI (.npz: array 'reconstructed'; .hspy: <name>_denoised.hspy)")
    parser.add_argument("--scheduler", default="", metavar="ADDRESS", help="dask.distributed scheduler (PCA)")
    parser.set_defaults(func=run)
