"""``python -m hsra_cli.train ARGS`` = ``hsra train ARGS``; the form to launch under torchrun:

    torchrun --nproc_per_node=4 -m hsra_cli.train --model hsra-s --data cubes/ --mask mask.mat --out runs/s
"""

import sys

from hsra_cli.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
