package app

import (
	"context"
	"errors"
	"log/slog"

	"roomcast/internal/config"
	"roomcast/internal/metrics"
)

// redisSeams is the multi-node mode (--redis).
func redisSeams(ctx context.Context, cfg *config.Config, rate config.Rate, m *metrics.Metrics, log *slog.Logger) (*seams, error) {
	return nil, errors.New("--redis: cluster mode is not available in this build yet")
}
