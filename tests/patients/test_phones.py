import pytest
from django.core.exceptions import ValidationError

from patients.documents import normalize_cpf
from patients.phones import normalize_phone

SAME_MOBILE = [
    "+55 11 98765-4321",
    "+5511987654321",
    "5511987654321",
    "(11) 98765-4321",
    "11 98765 4321",
    "11987654321",
    "011 98765-4321",
    "0055 11 98765-4321",
    "+55 (11) 9 8765-4321",
    # Without the ninth digit, as old WhatsApp accounts and patients still write it
    "+55 11 8765-4321",
    "551187654321",
    "(11) 8765-4321",
    "1187654321",
    # WhatsApp JIDs, with and without the ninth digit and a device suffix
    "5511987654321@s.whatsapp.net",
    "551187654321@s.whatsapp.net",
    "5511987654321:17@s.whatsapp.net",
]


@pytest.mark.parametrize("written", SAME_MOBILE)
def test_every_way_of_writing_a_mobile_reaches_the_same_number(written):
    assert normalize_phone(written) == "+5511987654321"


def test_a_landline_keeps_its_eight_digits():
    assert normalize_phone("(11) 3456-7890") == "+551134567890"
    assert normalize_phone("+55 11 3456-7890") == "+551134567890"


def test_a_mobile_from_ddd_55_is_not_mistaken_for_the_country_code():
    # Santa Maria (RS) has area code 55: "55 98765-4321" is a national number, not +55 9876…
    assert normalize_phone("55 98765-4321") == "+5555987654321"
    assert normalize_phone("(55) 8765-4321") == "+5555987654321"


def test_a_foreign_number_in_international_form_is_kept():
    assert normalize_phone("+1 415 555 2671") == "+14155552671"
    assert normalize_phone("+351 912 345 678") == "+351912345678"


@pytest.mark.parametrize("garbage", ["", "abc", "123", "11 9876", "+55 11 98765-43210000", "ligar depois", "0"])
def test_garbage_is_rejected_with_a_message_a_person_understands(garbage):
    with pytest.raises(ValidationError) as excinfo:
        normalize_phone(garbage)
    message = " ".join(excinfo.value.messages)
    assert "(11) 98765-4321" in message  # tells staff what a valid number looks like


@pytest.mark.parametrize("written", ["529.982.247-25", "52998224725", " 529 982 247 25 "])
def test_a_valid_cpf_is_stored_as_its_digits(written):
    assert normalize_cpf(written) == "52998224725"


@pytest.mark.parametrize("written", ["529.982.247-24", "111.111.111-11", "1234", "abc.def.ghi-jk"])
def test_an_invalid_cpf_is_rejected(written):
    with pytest.raises(ValidationError):
        normalize_cpf(written)
