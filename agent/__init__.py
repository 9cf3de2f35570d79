"""edx-agent: the data-exchange front-end agent (数据交换前置机 agent)."""

__version__ = "0.1.0"
