package dev.tidepool.tez.expr;

/** One lexical token of an expression. */
final class Token {
  enum Kind {
    NUMBER, STRING, IDENT, OP, LPAREN, RPAREN, COMMA, EOF
  }

  final Kind kind;
  /** Operator symbol, identifier/path, string contents, or number text. */
  final String text;
  final int pos;

  Token(Kind kind, String text, int pos) {
    this.kind = kind;
    this.text = text;
    this.pos = pos;
  }

  boolean isOp(String op) {
    return kind == Kind.OP && text.equals(op);
  }

  String describe() {
    switch (kind) {
      case EOF:
        return "end of expression";
      case STRING:
        return "string '" + text + "'";
      default:
        return "'" + text + "'";
    }
  }
}
