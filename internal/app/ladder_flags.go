package app

import "roomcast/internal/config"

// ladderOn reports whether --transcode asks for a quality ladder.
func ladderOn(cfg *config.Config) bool { return false }

func ladderNote(cfg *config.Config) string {
	if ladderOn(cfg) {
		return " and the quality ladder"
	}
	return ""
}
