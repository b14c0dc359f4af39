"""Registers: risk points, shelters, reserves, teams, experts, vulnerable residents (the daily side, 平战结合)."""
