import toy_task  # noqa: F401  (registers the task "toy_sine")
from sobolev_inr.tasks import TaskScript
config_parser, main, run = TaskScript("toy_sine")
if __name__ == "__main__":
    run()
