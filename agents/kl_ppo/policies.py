"""KLPPO's policies: SB3's actor-critic policies, unchanged.

The KL penalty lives in the reward, not in the networks, so the policy and the frozen
reference are both plain :class:`~stable_baselines3.common.policies.ActorCriticPolicy`
instances of the same architecture. The aliases are the ones SB3's PPO accepts.
"""

from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy"]

MlpPolicy = ActorCriticPolicy
CnnPolicy = ActorCriticCnnPolicy
MultiInputPolicy = MultiInputActorCriticPolicy
