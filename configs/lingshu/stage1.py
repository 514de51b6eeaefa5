"""Lingshu stage 1. python scripts/train.py --config=configs/lingshu/stage1.py:size=7b,data_root=/data,steps=N
--workdir=runs/stage1"""

from configs.lingshu.recipe import stage_config


def get_config(arg=None):
    return stage_config(1, arg)
