package dev.tidepool.tez.expr;

import com.fasterxml.jackson.databind.node.BooleanNode;
import com.fasterxml.jackson.databind.node.LongNode;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.TextNode;
import dev.tidepool.tez.json.Json;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Recursive-descent parser. Grammar, loosest binding first:
 *
 * <pre>
 *   expr       := or
 *   or         := and ( '||' and )*
 *   and        := equality ( '&amp;&amp;' equality )*
 *   equality   := comparison ( ( '==' | '!=' ) comparison )*
 *   comparison := additive ( ( '&lt;' | '&lt;=' | '&gt;' | '&gt;=' ) additive )*
 *   additive   := term ( ( '+' | '-' ) term )*
 *   term       := unary ( ( '*' | '/' | '%' ) unary )*
 *   unary      := ( '!' | '-' ) unary | primary
 *   primary    := NUMBER | STRING | 'true' | 'false' | 'null'
 *               | NAME '(' [ expr ( ',' expr )* ] ')'
 *               | PATH
 *               | '(' expr ')'
 * </pre>
 */
final class Parser {
  /** Function name to {min, max} argument count (max -1: unbounded). */
  private static final Map<String, int[]> FUNCTIONS = Map.of(
      "len", new int[] {1, 1},
      "lower", new int[] {1, 1},
      "upper", new int[] {1, 1},
      "abs", new int[] {1, 1},
      "round", new int[] {1, 1},
      "coalesce", new int[] {2, -1},
      "min", new int[] {2, 2},
      "max", new int[] {2, 2},
      "if", new int[] {3, 3});

  private static final int MAX_DEPTH = 200;

  private final List<Token> tokens;
  private int p;
  private int depth;

  private Parser(List<Token> tokens) {
    this.tokens = tokens;
  }

  static Node parse(String src) throws ExprParseException {
    Parser parser = new Parser(Lexer.tokenize(src));
    if (parser.peek().kind == Token.Kind.EOF) {
      throw new ExprParseException("empty expression", 0);
    }
    Node n = parser.expr();
    Token t = parser.peek();
    if (t.kind != Token.Kind.EOF) {
      throw new ExprParseException("unexpected " + t.describe(), t.pos);
    }
    return n;
  }

  private Token peek() {
    return tokens.get(p);
  }

  private Token next() {
    return tokens.get(p++);
  }

  private boolean acceptOp(String op) {
    if (peek().isOp(op)) {
      p++;
      return true;
    }
    return false;
  }

  private Node expr() throws ExprParseException {
    if (++depth > MAX_DEPTH) {
      throw new ExprParseException("expression nested too deeply", peek().pos);
    }
    try {
      return or();
    } finally {
      depth--;
    }
  }

  private Node or() throws ExprParseException {
    Node n = and();
    while (acceptOp("||")) {
      n = new Node.Binary("||", n, and());
    }
    return n;
  }

  private Node and() throws ExprParseException {
    Node n = equality();
    while (acceptOp("&&")) {
      n = new Node.Binary("&&", n, equality());
    }
    return n;
  }

  private Node equality() throws ExprParseException {
    Node n = comparison();
    while (true) {
      String op = peekOp("==", "!=");
      if (op == null) {
        return n;
      }
      p++;
      n = new Node.Binary(op, n, comparison());
    }
  }

  private Node comparison() throws ExprParseException {
    Node n = additive();
    while (true) {
      String op = peekOp("<", "<=", ">", ">=");
      if (op == null) {
        return n;
      }
      p++;
      n = new Node.Binary(op, n, additive());
    }
  }

  private Node additive() throws ExprParseException {
    Node n = term();
    while (true) {
      String op = peekOp("+", "-");
      if (op == null) {
        return n;
      }
      p++;
      n = new Node.Binary(op, n, term());
    }
  }

  private Node term() throws ExprParseException {
    Node n = unary();
    while (true) {
      String op = peekOp("*", "/", "%");
      if (op == null) {
        return n;
      }
      p++;
      n = new Node.Binary(op, n, unary());
    }
  }

  private Node unary() throws ExprParseException {
    String op = peekOp("!", "-");
    if (op != null) {
      p++;
      if (++depth > MAX_DEPTH) {
        throw new ExprParseException("expression nested too deeply", peek().pos);
      }
      try {
        return new Node.Unary(op, unary());
      } finally {
        depth--;
      }
    }
    return primary();
  }

  private String peekOp(String... ops) {
    Token t = peek();
    if (t.kind != Token.Kind.OP) {
      return null;
    }
    for (String op : ops) {
      if (t.text.equals(op)) {
        return op;
      }
    }
    return null;
  }

  private Node primary() throws ExprParseException {
    Token t = next();
    switch (t.kind) {
      case NUMBER:
        return new Node.Literal(number(t));
      case STRING:
        return new Node.Literal(TextNode.valueOf(t.text));
      case LPAREN: {
        Node n = expr();
        expect(Token.Kind.RPAREN, "')'");
        return n;
      }
      case IDENT:
        return identifier(t);
      default:
        throw new ExprParseException("expected a value but found " + t.describe(), t.pos);
    }
  }

  private Node identifier(Token t) throws ExprParseException {
    if (peek().kind == Token.Kind.LPAREN) {
      int[] arity = FUNCTIONS.get(t.text);
      if (arity == null) {
        throw new ExprParseException("unknown function '" + t.text + "' (known: "
            + String.join(", ", new java.util.TreeSet<>(FUNCTIONS.keySet())) + ")", t.pos);
      }
      p++; // '('
      List<Node> args = new ArrayList<>();
      if (peek().kind != Token.Kind.RPAREN) {
        args.add(expr());
        while (peek().kind == Token.Kind.COMMA) {
          p++;
          args.add(expr());
        }
      }
      expect(Token.Kind.RPAREN, "')' or ','");
      int n = args.size();
      if (n < arity[0] || (arity[1] >= 0 && n > arity[1])) {
        String want = arity[1] < 0 ? "at least " + arity[0]
            : arity[0] == arity[1] ? String.valueOf(arity[0]) : arity[0] + " to " + arity[1];
        throw new ExprParseException(t.text + "() takes " + want + " argument"
            + (want.equals("1") ? "" : "s") + ", got " + n, t.pos);
      }
      return new Node.Call(t.text, args.toArray(new Node[0]));
    }
    switch (t.text) {
      case "true":
        return new Node.Literal(BooleanNode.TRUE);
      case "false":
        return new Node.Literal(BooleanNode.FALSE);
      case "null":
        return new Node.Literal(NullNode.instance);
      default:
        return new Node.Field(t.text);
    }
  }

  private void expect(Token.Kind kind, String what) throws ExprParseException {
    Token t = next();
    if (t.kind != kind) {
      throw new ExprParseException("expected " + what + " but found " + t.describe(), t.pos);
    }
  }

  private static com.fasterxml.jackson.databind.JsonNode number(Token t)
      throws ExprParseException {
    String s = t.text;
    boolean integral = s.chars().allMatch(c -> c >= '0' && c <= '9');
    if (integral) {
      try {
        return LongNode.valueOf(Long.parseLong(s));
      } catch (NumberFormatException tooBig) {
        // falls through to a double
      }
    }
    try {
      return Json.number(Double.parseDouble(s));
    } catch (NumberFormatException e) {
      throw new ExprParseException("malformed number '" + s + "'", t.pos);
    }
  }
}
