package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// health runs `roomcast health`: GET a readiness URL, exit 0 on 200. It is
// the container HEALTHCHECK (the image has no curl).
func health(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("roomcast health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080/readyz", "readiness URL to check")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get(*url)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %s", *url, resp.Status)
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}
