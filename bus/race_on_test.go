//go:build race

package bus

// raceEnabled is set when the tests run under the race detector, which
// makes each signature verify many times slower.
const raceEnabled = true
