package quiz

import "sort"

// Payout is one winner's share.
type Payout struct {
	User        string `json:"user"`
	AmountCents int64  `json:"amount_cents"`
}

// Split divides prize cents among winners exactly (Q5): each gets
// floor(prize / winners); the remaining prize mod winners cents go one each
// to the winners first in byte order of their user ids, so the split is the
// same on every node and every retry and the amounts add up to prize. With no
// winners nothing is paid (the prize stays with the organizer) and Split
// returns nil. Duplicate ids are counted once.
func Split(prize int64, winners []string) []Payout {
	ids := append([]string(nil), winners...)
	sort.Strings(ids)
	uniq := ids[:0]
	for i, id := range ids {
		if i == 0 || id != ids[i-1] {
			uniq = append(uniq, id)
		}
	}
	if len(uniq) == 0 || prize < 0 {
		return nil
	}
	k := int64(len(uniq))
	each, rest := prize/k, prize%k
	out := make([]Payout, len(uniq))
	for i, id := range uniq {
		out[i] = Payout{User: id, AmountCents: each}
		if int64(i) < rest {
			out[i].AmountCents++
		}
	}
	return out
}
