"""Lingshu stage 3. python scripts/train.py --config=configs/lingshu/stage3.py:size=7b,data_root=/data,steps=N
--workdir=runs/stage3 --config.init_from=runs/stage2"""

from configs.lingshu.recipe import stage_config


def get_config(arg=None):
    return stage_config(3, arg)
