// Package hygiene holds the repository's structural tests: every package
// has a doc comment, domain packages import no transport or SQL driver, and
// no production file has an init function. It has no production code.
package hygiene
