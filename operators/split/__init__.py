"""Splitting source videos into clips: shot detection and the rules applied to shots."""
