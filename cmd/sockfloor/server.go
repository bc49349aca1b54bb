package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// serve is the child: the least a server can do for each pattern. Every
// connection has a goroutine reading requests (tap, quiz) and writing one
// reply per read; one goroutine pushes to every connection each tick
// (quiz, push). It runs until its parent kills it.
func serve(addr string) error {
	pattern := os.Getenv("SOCKFLOOR_PATTERN")
	size, err := strconv.Atoi(os.Getenv("SOCKFLOOR_SIZE"))
	if err != nil {
		return fmt.Errorf("SOCKFLOOR_SIZE: %w", err)
	}
	every, err := time.ParseDuration(os.Getenv("SOCKFLOOR_EVERY"))
	if err != nil {
		return fmt.Errorf("SOCKFLOOR_EVERY: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println("ready")
	var mu sync.Mutex
	var conns []net.Conn
	if pattern == "quiz" || pattern == "push" {
		go push(&mu, &conns, fill('P', size), every)
	}
	reply := fill('R', replySize)
	for {
		cn, err := ln.Accept()
		if err != nil {
			return err
		}
		mu.Lock()
		conns = append(conns, cn)
		mu.Unlock()
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := cn.Read(buf); err != nil {
					return
				}
				if pattern != "push" {
					if _, err := cn.Write(reply); err != nil {
						return
					}
				}
			}
		}()
	}
}

// push writes msg to every connection each tick, one write each.
func push(mu *sync.Mutex, conns *[]net.Conn, msg []byte, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		mu.Lock()
		cs := *conns
		mu.Unlock()
		for _, cn := range cs {
			_, _ = cn.Write(msg)
		}
	}
}

func fill(b byte, n int) []byte {
	s := make([]byte, n)
	for i := range s {
		s[i] = b
	}
	return s
}
