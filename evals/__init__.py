"""The eval harness (gold sets, metrics, reports) lives here; see the README's roadmap."""
