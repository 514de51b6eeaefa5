"""Lingshu stage 2. python scripts/train.py --config=configs/lingshu/stage2.py:size=7b,data_root=/data,steps=N
--workdir=runs/stage2 --config.init_from=runs/stage1"""

from configs.lingshu.recipe import stage_config


def get_config(arg=None):
    return stage_config(2, arg)
