"""Named parameters: numbered by first use, casts and literals left alone, every name given."""

from __future__ import annotations

import pytest

from pmd_service.core.named_sql import Named


def test_each_name_is_one_number_in_order_of_first_use() -> None:
    sql = Named("SELECT :b::int, :a, :b, x::text, '12:30', 'a:b' FROM t WHERE y = :a_2")
    assert sql == "SELECT $1::int, $2, $1, x::text, '12:30', 'a:b' FROM t WHERE y = $3"
    assert sql.names == ("b", "a", "a_2")
    assert sql.bind({"a": 1, "b": 2, "a_2": 3, "unused": 4}) == (sql, 2, 1, 3)


def test_a_statement_naming_a_parameter_it_is_not_given_is_refused() -> None:
    sql = Named("SELECT :owner, :policy")
    with pytest.raises(KeyError, match="policy"):
        sql.bind({"owner": 1})


def test_a_number_written_by_hand_is_refused() -> None:
    with pytest.raises(ValueError, match="numbers none"):
        Named("SELECT :owner, $2")


def test_it_binds_the_text_as_a_plain_str_which_asyncpg_needs() -> None:
    sql = Named("SELECT :n")
    text, value = sql.bind({"n": 1})
    assert type(text) is str and text.strip() == "SELECT $1" and value == 1
