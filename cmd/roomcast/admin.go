package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"roomcast/internal/app"
	"roomcast/internal/config"
)

const adminUsage = `usage:
  roomcast admin login [--data DIR | --db DSN] [--http ADDR | --public-url URL]
      print a one-time sign-in link for the studio (valid 15 minutes, works once)
`

// admin runs `roomcast admin SUB`.
func admin(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, adminUsage)
		if len(args) == 0 {
			return errors.New("admin: missing subcommand")
		}
		return nil
	}
	switch args[0] {
	case "login":
		cfg, err := config.Load("roomcast admin login", args[1:], os.LookupEnv)
		if err != nil {
			return err
		}
		st, err := app.OpenStore(cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		link, err := app.LoginLink(context.Background(), st, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Sign in to the studio with this one-time link (valid 15 minutes, works once):\n\n  %s\n\n", link)
		return nil
	default:
		fmt.Fprint(stderr, adminUsage)
		return fmt.Errorf("admin: unknown subcommand %q", args[0])
	}
}
