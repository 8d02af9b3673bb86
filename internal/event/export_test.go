package event

// Internals the external tests compare against each other.
var (
	ParseFast      = parseFast
	ParseSlow      = parseSlow
	IsActionSyntax = isActionSyntax
	IsTimeSyntax   = isTimeSyntax
)
