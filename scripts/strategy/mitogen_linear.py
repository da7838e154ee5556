# Ansible's linear strategy run through Mitogen (the mitogen package pinned
# in requirements.txt): the Makefile points ANSIBLE_STRATEGY_PLUGINS here.
# Mitogen keeps one Python per target and runs each module in it, instead of
# a new interpreter per task; a warm re-run of the full stack takes about
# half the time. The collection does not need it: `make ... MITOGEN=0`, or
# any other controller, runs the same plays with the stock strategy.
import ansible.plugins.strategy.linear
import ansible_mitogen.strategy


class StrategyModule(ansible_mitogen.strategy.StrategyMixin,
                     ansible.plugins.strategy.linear.StrategyModule):
    pass
