// Package suggest finds the name a user most likely meant ("did you mean
// …?") among the names that exist: keys, commands.
package suggest

import "fmt"

// Closest returns the candidate nearest to typed by optimal string
// alignment distance (Damerau-Levenshtein with adjacent transpositions),
// if it is close enough to be a typo: at most 2 edits, and fewer than half
// of typed's length. Ties go to the earlier candidate; an exact match is
// no suggestion.
func Closest(typed string, candidates []string) (string, bool) {
	best, bestD := "", -1
	for _, c := range candidates {
		if c == typed {
			continue
		}
		d := Distance(typed, c)
		if d > 2 || 2*d >= len([]rune(typed)) {
			continue
		}
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best, bestD >= 0
}

// Hint is "did you mean %q?" for the closest candidate, or "" for none.
func Hint(typed string, candidates []string) string {
	if c, ok := Closest(typed, candidates); ok {
		return fmt.Sprintf("did you mean %q?", c)
	}
	return ""
}

// maxLen bounds the strings Distance compares: names are short, and a
// long input must not cost quadratic time.
const maxLen = 128

// Distance is the optimal string alignment distance between a and b, in
// runes: insertions, deletions, substitutions and swaps of two adjacent
// runes each cost 1. Strings longer than 128 runes compare as far apart.
func Distance(a, b string) int {
	s, t := []rune(a), []rune(b)
	if len(s) > maxLen || len(t) > maxLen {
		return max(len(s), len(t))
	}
	// Three rows: the one before the previous is needed for swaps.
	prev2 := make([]int, len(t)+1)
	prev := make([]int, len(t)+1)
	cur := make([]int, len(t)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(s); i++ {
		cur[0] = i
		for j := 1; j <= len(t); j++ {
			cost := 1
			if s[i-1] == t[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && s[i-1] == t[j-2] && s[i-2] == t[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(t)]
}
