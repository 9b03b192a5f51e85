"""Generate the bundled sample: a colour-chart scene, a coded aperture and its snapshot.

Everything here is produced by the project itself: the cube is a ColorChecker chart built from published
reflectance spectra under D65 (hsra_cli.synth), the aperture is a random binary code (seed 0), and the
cube is quantised to 12 bits, and the
measurement is simulated with the project's CASSI operator (28 bands, step 2, width axis, no noise).

    python samples/make_sample.py            # writes samples/colorchecker/{cube,meas}/...

Layout:
    samples/colorchecker/cube/colorchecker.mat   truth cube, 256×256×28, key `cube`, with wavelengths_nm
    samples/colorchecker/meas/colorchecker.mat   measurement, 256×310, key `meas`
    samples/colorchecker/meas/mask.mat           the aperture, 256×256, key `mask`
    samples/colorchecker/meas/colorchecker_meas.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hsra_cli.bands import default_wavelengths
from hsra_cli.io import write_cube
from hsra_cli.simulate import simulate_files
from hsra_cli.synth import colorchecker_scene

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "colorchecker")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    wavelengths = default_wavelengths(28)
    cube = colorchecker_scene(args.size, args.size, wavelengths, seed=0)
    # Quantised to 12 bits (as a 12-bit sensor would record it): the file compresses from ~6 MB to ~0.2 MB and
    # the quantised cube is the truth.
    cube = (np.round(cube * 4095) / 4095).astype(np.float32)
    truth = write_cube(
        args.out / "cube" / "colorchecker.mat",
        cube,
        wavelengths_nm=wavelengths,
        metadata={"source": "hsra_cli.synth.colorchecker_scene (ColorChecker reflectances under D65), seed 0"},
        overwrite=True,
    )
    print(truth)
    for path in simulate_files([truth], args.out / "meas", mask_kind="random-binary", seed=0, overwrite=True).outputs:
        print(path)


if __name__ == "__main__":
    main()
