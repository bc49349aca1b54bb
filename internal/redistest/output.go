package redistest

import "os"

// Output is what the node has written so far (stdout and stderr).
func (n *Node) Output() string {
	raw, _ := os.ReadFile(n.log)
	return string(raw)
}
