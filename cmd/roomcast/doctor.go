package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"roomcast/internal/app"
	"roomcast/internal/config"
)

// doctor runs `roomcast doctor` with serve's flags; it fails (exit 1)
// when it found a problem.
func doctor(args []string, stdout, stderr io.Writer) error {
	cfg, err := config.Load("roomcast doctor", args, os.LookupEnv)
	if err != nil {
		return err
	}
	if n := app.Doctor(context.Background(), cfg, time.Now, stdout); n > 0 {
		return fmt.Errorf("doctor: %d problem(s); see above", n)
	}
	return nil
}
