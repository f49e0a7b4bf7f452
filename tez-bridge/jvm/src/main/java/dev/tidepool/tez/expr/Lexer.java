package dev.tidepool.tez.expr;

import java.util.ArrayList;
import java.util.List;

/** Splits an expression into tokens. */
final class Lexer {
  private final String src;
  private int i;

  private Lexer(String src) {
    this.src = src;
  }

  static List<Token> tokenize(String src) throws ExprParseException {
    return new Lexer(src).run();
  }

  private List<Token> run() throws ExprParseException {
    List<Token> out = new ArrayList<>();
    while (true) {
      skipSpace();
      if (i >= src.length()) {
        out.add(new Token(Token.Kind.EOF, "", i));
        return out;
      }
      int start = i;
      char c = src.charAt(i);
      if (isDigit(c) || (c == '.' && i + 1 < src.length() && isDigit(src.charAt(i + 1)))) {
        out.add(new Token(Token.Kind.NUMBER, number(), start));
      } else if (c == '\'') {
        out.add(new Token(Token.Kind.STRING, string(), start));
      } else if (isIdentStart(c)) {
        out.add(new Token(Token.Kind.IDENT, path(), start));
      } else if (c == '(') {
        i++;
        out.add(new Token(Token.Kind.LPAREN, "(", start));
      } else if (c == ')') {
        i++;
        out.add(new Token(Token.Kind.RPAREN, ")", start));
      } else if (c == ',') {
        i++;
        out.add(new Token(Token.Kind.COMMA, ",", start));
      } else {
        out.add(new Token(Token.Kind.OP, operator(), start));
      }
    }
  }

  private void skipSpace() {
    while (i < src.length() && Character.isWhitespace(src.charAt(i))) {
      i++;
    }
  }

  private String number() throws ExprParseException {
    int start = i;
    while (i < src.length() && isDigit(src.charAt(i))) {
      i++;
    }
    if (i < src.length() && src.charAt(i) == '.') {
      i++;
      while (i < src.length() && isDigit(src.charAt(i))) {
        i++;
      }
    }
    if (i < src.length() && (src.charAt(i) == 'e' || src.charAt(i) == 'E')) {
      int save = i;
      i++;
      if (i < src.length() && (src.charAt(i) == '+' || src.charAt(i) == '-')) {
        i++;
      }
      if (i >= src.length() || !isDigit(src.charAt(i))) {
        throw new ExprParseException("malformed number exponent", save);
      }
      while (i < src.length() && isDigit(src.charAt(i))) {
        i++;
      }
    }
    if (i < src.length() && isIdentStart(src.charAt(i))) {
      throw new ExprParseException("unexpected character '" + src.charAt(i) + "' after number", i);
    }
    return src.substring(start, i);
  }

  private String string() throws ExprParseException {
    int start = i;
    i++; // opening quote
    StringBuilder sb = new StringBuilder();
    while (true) {
      if (i >= src.length()) {
        throw new ExprParseException("unterminated string literal", start);
      }
      char c = src.charAt(i++);
      if (c == '\'') {
        return sb.toString();
      }
      if (c == '\\') {
        if (i >= src.length()) {
          throw new ExprParseException("unterminated string literal", start);
        }
        char e = src.charAt(i++);
        switch (e) {
          case '\'':
          case '\\':
            sb.append(e);
            break;
          case 'n':
            sb.append('\n');
            break;
          case 't':
            sb.append('\t');
            break;
          case 'r':
            sb.append('\r');
            break;
          default:
            throw new ExprParseException("unknown escape \\" + e + " in string literal", i - 2);
        }
      } else {
        sb.append(c);
      }
    }
  }

  /** An identifier, or a dotted path such as {@code address.city} or {@code tags.0}. */
  private String path() throws ExprParseException {
    int start = i;
    while (i < src.length() && isIdentPart(src.charAt(i))) {
      i++;
    }
    while (i < src.length() && src.charAt(i) == '.') {
      int dot = i;
      i++;
      if (i >= src.length() || !isIdentPart(src.charAt(i))) {
        throw new ExprParseException("expected a field name after '.'", dot);
      }
      while (i < src.length() && isIdentPart(src.charAt(i))) {
        i++;
      }
    }
    return src.substring(start, i);
  }

  private static final String[] OPERATORS = {
      "<=", ">=", "==", "!=", "&&", "||", "<", ">", "+", "-", "*", "/", "%", "!"
  };

  private String operator() throws ExprParseException {
    for (String op : OPERATORS) {
      if (src.startsWith(op, i)) {
        i += op.length();
        return op;
      }
    }
    char c = src.charAt(i);
    if (c == '=' || c == '&' || c == '|') {
      String hint = c == '=' ? "==" : c == '&' ? "&&" : "||";
      throw new ExprParseException("unexpected '" + c + "' (did you mean '" + hint + "'?)", i);
    }
    if (c == '"') {
      throw new ExprParseException("string literals use single quotes", i);
    }
    throw new ExprParseException("unexpected character '" + c + "'", i);
  }

  private static boolean isDigit(char c) {
    return c >= '0' && c <= '9';
  }

  private static boolean isIdentStart(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
  }

  private static boolean isIdentPart(char c) {
    return isIdentStart(c) || isDigit(c);
  }
}
