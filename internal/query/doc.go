// Package query owns Muster's implementation of the IoT Hub query language
// subset: the lexer and parser (to an AST), a Go evaluator over one JSON
// document, and a translator to SQL for SQLite and PostgreSQL so that
// `POST /devices/query` and configuration metrics run inside the database.
// It imports no SQL driver, no HTTP and no MQTT package; the SQL it emits is
// text plus bound arguments for the caller's database/sql handle.
//
// # Language
//
//	SELECT [TOP n] ( * | expr [AS alias] {, expr [AS alias]} | COUNT() [AS alias] )
//	FROM devices | devices.modules | devices.jobs
//	[WHERE condition]
//	[GROUP BY path]
//
// A bare condition (a configuration's targetCondition, an edge route's WHERE
// clause) is parsed by [ParseCondition]; "*" means every document.
// Keywords and function names are case-insensitive; property names are
// case-sensitive. A path is a dot-separated list of property names, each an
// identifier (letters, digits, '_' and '$', not starting with a digit) or a
// double-bracket quoted name ([[any text]]). A leading collection qualifier
// (devices., devices.modules., devices.jobs.) is removed. Literals are
// 'single' or "double" quoted strings (escapes \' \" \\ \/ \b \f \n \r \t
// \uXXXX; inside single quotes a doubled quote also stands for one quote),
// numbers, true, false and null.
// Array literals are only allowed as the list of IN and NIN.
//
// # Values and three-valued logic
//
// Every expression yields a JSON value or "undefined" (a missing property or
// the result of an operation whose operands have unsuitable types). Boolean
// operators follow SQL's three-valued logic with undefined in the role of
// SQL NULL, and a document matches a condition only when it evaluates to
// true:
//
//   - Comparisons (= != <> < > <= >=) are defined only between two
//     primitives of the same type: numbers compare numerically, strings by
//     their UTF-8 bytes, booleans and nulls only with = and !=. Comparing
//     anything else (undefined, an object or array, two different types)
//     yields undefined, so tags.env != 'prod' does not match a twin without
//     tags.env.
//   - NOT undefined is undefined; AND is false if any operand is false, else
//     undefined if any is undefined; OR is true if any operand is true, else
//     undefined if any is undefined. A value that is not a boolean (a string
//     property, say) is undefined when used as a condition.
//   - x IN [a, b] means x = a OR x = b (an empty list is false) and
//     x NIN [...] (or x NOT IN [...]) means NOT (x IN [...]).
//   - Arithmetic (+ - * / % and unary -) is defined on numbers (IEEE-754
//     doubles); other operands, division or modulo by zero, and results
//     that overflow to infinity are undefined.
//   - IS_DEFINED and the IS_<type> functions always return a boolean. The
//     string functions (LOWER, UPPER, LENGTH, STARTS_WITH, ENDS_WITH,
//     CONTAINS, CONCAT, ...) are undefined unless every argument is a string,
//     the numeric ones unless every argument is a number. LOWER and UPPER
//     change ASCII letters only, so that both databases agree.
//
// The Go evaluator ([Expr.Eval], [Query.Run]) and the SQL translation
// ([Query.SQL], [CondSQL]) implement the same semantics; the package tests
// run every condition through both and require identical results. Known
// limits of the SQL side, all outside what twin documents written by Muster
// contain: PostgreSQL reports an error (instead of undefined) when arithmetic
// overflows a double or AS_NUMBER meets a number beyond the range of a
// double, it renders doubles as text with the session's
// extra_float_digits (the default 1 is exact), and its % on non-integral
// operands is computed in decimal; GROUP BY keys that are objects or arrays
// group and order by their JSON text, which differs between backends.
//
// # Results
//
// SELECT * yields the documents themselves. Projections yield one JSON
// object per row whose properties are named by the alias, else by the last
// property name of a path, else "$1", "$2", ... in order; an undefined value
// leaves its property out. COUNT() counts the matching documents (per group
// with GROUP BY). With GROUP BY, every projection must be COUNT() or the
// grouping path; documents without the path form one group whose items
// leave the path's property out. Groups are ordered by type (undefined,
// null, booleans, numbers, strings, arrays, objects) and then by value;
// other rows in the order of [Schema.Key]. TOP n keeps the first n items.
package query
