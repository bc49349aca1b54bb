package presence

// Summary is one room's arrivals and departures on one node since the last
// summary: the first few members who entered (by name), how many entered and
// how many left. The fan-out node collects them; the service turns them
// into enter/leave messages.
type Summary struct {
	Room   string
	Named  []Member
	Joined int
	Left   int
}
