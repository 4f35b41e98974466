"""Guardrails: red flags, requests for a person, opt-outs, abuse and medical questions, caught before any engine."""

from __future__ import annotations

import random
import string

import pytest
from django.utils import translation

from conversations.guardrails import PRECEDENCE, Guard, GuardKind, check, detect, normalize, reply_for


@pytest.fixture(autouse=True)
def english():
    """The staff labels are asserted in their English source; the suite's default language is pt-BR."""
    with translation.override("en"):
        yield


E = GuardKind.EMERGENCY
S = GuardKind.SUICIDE
H = GuardKind.HUMAN
O = GuardKind.OPT_OUT  # noqa: E741
A = GuardKind.ABUSE
M = GuardKind.MEDICAL_ADVICE
CLINIC = "Clínica Sorriso"

EMERGENCIES = [
    # chest pain
    "Estou com dor no peito",
    "to com uma dor no peito muito forte",
    "tô cum dor no peito",
    "dor no peitu desde cedo",
    "dor forte no peito irradiando pro braço",
    "dor no peito irradiando pro braço esquerdo",
    "aperto no peito",
    "sinto um aperto no peito e suor frio",
    "peito doendo",
    "meu peito tá doendo muito",
    "o peito esta apertado",
    "DOR NO PEITO",
    "dói o peito quando respiro",
    "acho que estou tendo um infarto",
    "meu pai está infartando",
    "ataque cardíaco",
    "pressão no peito",
    "dor no braço esquerdo e enjoo",
    # breathing
    "falta de ar",
    "Tô com falta de ar",
    "farta de ar",
    "falta d ar",
    "nao consigo respirar",
    "não consigo respirar direito",
    "ñ tô conseguindo respirar!!",
    "n consigo respirarr",
    "não consigo resprar",
    "sem ar",
    "tô sem ar",
    "respirando mal",
    "ela está respirando com dificuldade",
    "dificuldade pra respirar",
    "meu filho não está respirando",
    "parou de respirar",
    "meu bebe engasgou e ficou roxo",
    "lábios roxos",
    "crise de asma forte",
    # fainting
    "desmaiou",
    "minha mãe desmaiou",
    "desmaiei agora no banheiro",
    "quase desmaiei",
    "ele perdeu a consciência",
    "perdeu os sentidos",
    "ela apagou do nada",
    "meu marido apagou e não acorda",
    "está inconsciente",
    "ta desacordado",
    "dezmaiou",
    # bleeding
    "sangrando muito",
    "tá sangrando muito depois da extração",
    "hemorragia",
    "hemoragia",
    "não para de sangrar",
    "nao pára de sangrar o dente",
    "sangramento forte",
    "sangramento que não para",
    "perdendo muito sangue",
    "vomitando sangue",
    "muito sangue saindo da boca",
    # stroke
    "boca torta",
    "a boca dele ficou torta",
    "rosto caído de um lado",
    "fala enrolada",
    "ela está falando enrolado",
    "braço dormente de um lado",
    "braço esquerdo dormente e fala estranha",
    "não consegue mexer o braço",
    "AVC",
    "acho que meu pai tá tendo um avc",
    "A.V.C.",
    "derrame",
    "minha vó teve um derrame agora",
    "pior dor de cabeça da minha vida",
    # seizure
    "convulsão",
    "meu filho está convulsionando",
    "ele convulsionou",
    "ataque epilético",
    "ataque epileptico",
    "crise convulsiva",
    "convulsao",
    "comvulsão",
    "teve uma crise de epilepsia agora",
    # severe allergy, airway, poisoning
    "garganta fechando",
    "minha garganta está fechando",
    "inchaço na garganta",
    "inchaço na língua depois do remédio",
    "língua inchada",
    "o pescoço está inchando depois da extração",
    "choque anafilático",
    "reação alérgica grave",
    "não consigo engolir nem água",
    "meu filho tomou veneno",
    "overdose",
    # a cry for help, alone
    "socorro",
    "SOCORRO!!!",
    "socorro me ajuda",
    # third person, questions and unsure talk still count
    "meu avô está com dor no peito, o que faço?",
    "será que é AVC?",
    "acho que é um derrame",
    "dor no peito é grave?",
    # history, but something is happening now
    "minha mãe teve AVC ano passado e agora está com a boca torta",
    "tive convulsão há 2 anos e hoje de novo",
    # negation of one symptom does not hide another
    "não tenho dor no peito mas estou com falta de ar",
    "sem febre, mas com dor no peito",
    "tô com dor no dente e no peito",
    "sangue não para",
    "ele tá tendo uma convulsão",
    "meu filho teve febre e convulsão",
    "estou grávida e com sangramento forte",
    "minha bolsa estourou",
    "bati a cabeça e estou vomitando",
    "Minha mãe teve um AVC. Quero marcar consulta",
]

SUICIDAL = [
    "quero morrer",
    "queria morrer",
    "Eu só quero morrer",
    "vou me matar",
    "to pensando em me matar",
    "vontade de me matar",
    "pensando em suicídio",
    "penso em suicidio todo dia",
    "vou me suicidar",
    "não aguento mais viver",
    "nao aguento mais viver assim",
    "não quero mais viver",
    "tirar minha vida",
    "penso em tirar a minha própria vida",
    "acabar com tudo",
    "quero acabar com a minha vida",
    "seria melhor se eu não existisse",
    "vou tomar todos os remédios pra morrer",
    "vontade de morrer",
    "n vejo mais sentido na vida",
    "quero me enforcar",
    "vou pular da ponte",
    # suicidal talk outranks the emergency words in the same message
    "vou me matar, tomei uma cartela de remédios",
    # a past attempt is still told to staff
    "já tentei suicídio ano passado",
]

HUMANS = [
    "atendente",
    "ATENDENTE!",
    "quero um atendente",
    "me passa pra uma atendente por favor",
    "atendente humano",
    "atendimento humano",
    "falar com alguém",
    "quero falar com alguém",
    "preciso falar com uma pessoa",
    "quero falar com uma pessoa",
    "humano",
    "humano por favor",
    "pessoa de verdade",
    "quero falar com uma pessoa de verdade",
    "quero falar com a recepção",
    "posso falar com a recepcionista?",
    "me liga",
    "pode me ligar?",
    "vcs podem me ligar amanhã?",
    "liga pra mim por favor",
    "não quero falar com robô",
    "nao quero robo",
    "chama alguém aí",
    "quero falar com o responsável",
    "você é robô? quero falar com uma pessoa",
    "atendentee",
    "preciso falar com o financeiro",
    "quero falar com a atendente",
    "chama a atendente",
]

OPT_OUTS = [
    "parar",
    "PARAR",
    "pare",
    "Pare!",
    "sair",
    "stop",
    "STOP",
    "parem",
    "quero sair",
    "sair por favor",
    "descadastrar",
    "não quero mais receber mensagens",
    "nao quero receber mais msg",
    "não quero mais receber lembretes",
    "para de me mandar mensagem",
    "parem de enviar isso",
    "não me mande mais mensagens",
    "remover meu número",
    "por favor remova meu número da lista",
    "me tira dessa lista",
    "quero me descadastrar",
    "sair da lista",
    "cancelar os lembretes",
    "não quero mais mensagens",
    "Parar, por favor. Obrigado",
]

ABUSES = [
    "vai tomar no cu",
    "vai toma no c",
    "vtnc",
    "vsf",
    "vai se foder",
    "vai se fuder robô",
    "sua burra",
    "seu idiota",
    "robô inútil",
    "robô burro",
    "você é um lixo",
    "vc é uma incompetente",
    "clínica de merda",
    "que atendimento lixo",
    "bando de incompetentes",
    "filho da puta",
    "fdp",
    "cala a boca",
    "essa clínica é uma porcaria",
    "vou te matar",
]

MEDICAL = [
    "posso tomar dipirona?",
    "posso tomar ibuprofeno depois da extração?",
    "posso tomar remédio pra dor?",
    "devo tomar antibiótico?",
    "preciso tomar amoxicilina?",
    "qual remédio eu tomo?",
    "que remédio é bom pra dor de dente",
    "me indica um remédio",
    "me receita um antibiótico",
    "que dose de ibuprofeno",
    "qual a dosagem da amoxicilina",
    "quantas gotas de dipirona pro meu filho",
    "nimesulida de quantas em quantas horas?",
    "quantos mg de paracetamol posso tomar",
    "o que significa meu exame",
    "o que quer dizer esse resultado do exame",
    "meu exame deu alterado, é grave?",
    "meu hemograma veio com as plaquetas baixas",
    "meu colesterol deu 260",
    "pode interpretar meu exame?",
    "isso é normal?",
    "é normal doer depois da extração?",
    "é normal sangrar um pouco a gengiva?",
    "é normal ficar inchado depois do canal?",
    "é grave?",
    "será que é grave?",
    "o que eu tenho?",
    "o que pode ser isso?",
    "será que é infecção?",
    "será que estou com sinusite",
    "qual o diagnóstico?",
    "o que eu tomo pra dor?",
    "o que faço pra dor passar",
]

# Ordinary clinic messages, slang and look-alikes: none of them is a guard.
ORDINARY = [
    "oi",
    "Olá, bom dia!",
    "boa tarde",
    "obrigado",
    "obrigada, até amanhã",
    "ok",
    "sim",
    "não",
    "1",
    "quero marcar limpeza",
    "queria marcar uma consulta",
    "tem horário amanhã às 15h?",
    "sexta de manhã",
    "dia 28 às 9h30",
    "28/11",
    "semana que vem, depois do almoço",
    "o mais cedo possível",
    "cancelar",
    "quero cancelar minha consulta",
    "cancelar minha consulta de amanhã",
    "preciso remarcar",
    "qual o endereço?",
    "vocês atendem Unimed?",
    "quanto custa a limpeza?",
    "qual o horário de funcionamento?",
    "tem estacionamento?",
    "é normal ter consulta sábado?",
    "vou sair do trabalho às 18h",
    "saio do trabalho às 18h, pode ser 19h?",
    "quero parar de fumar, vocês têm tratamento?",
    "para mim tanto faz",
    "pode ser para amanhã",
    "você é robô?",
    "vc é humano?",
    "estou falando com um robô?",
    "isso aqui é uma pessoa de verdade ou robô?",
    "não precisa me ligar, pode ser por aqui",
    "não quero falar com atendente, só marcar",
    "a atendente me disse pra mandar mensagem aqui",
    "tá doendo pra caramba o dente",
    "meu dente tá doendo muito",
    "estou com dor de dente",
    "dor de cabeça leve",
    "meu dente quebrou",
    "caiu uma obturação",
    "bati o dente e ele caiu, preciso de um horário urgente",
    "o rosto ficou um pouco inchado",
    "a boca está dormente depois da anestesia",
    "não estou com falta de ar",
    "nao tenho falta de ar nem dor no peito",
    "sem dor no peito",
    "nenhuma dor no peito, só no dente",
    "minha mãe teve AVC ano passado",
    "tive um derrame há 3 anos, preciso de um dentista com acessibilidade",
    "sequela de AVC, quero marcar fisioterapia",
    "meu pai tem histórico de convulsão, precisa avisar o dentista?",
    "a sala tem ar condicionado?",
    "apaguei a mensagem sem querer",
    "meu celular apagou e perdi a conversa",
    "quero morrer de rir kkkk",
    "essa dor vai me matar",
    "tô morrendo de dor, tem horário hoje?",
    "a clínica é longe pra burro",
    "que merda, esqueci o horário",
    "a recepcionista foi ótima",
    "a fila estava enorme",
    "o que eu tenho que levar na consulta?",
    "o resultado do exame já saiu?",
    "posso levar o exame na consulta?",
    "posso tomar café antes do exame?",
    "minha filha pode ir comigo?",
    "estou sem carro, tem como ser online?",
    "meu filho vai junto",
    "já tomei o remédio que a dentista passou",
    "qual o valor do clareamento?",
    "parou de doer, obrigado",
    "quero falar sobre o orçamento do implante",
    "vou falar com meu marido e te aviso",
    "a gengiva está sangrando",
    "minha gengiva sangra quando escovo",
    "sangrou um pouco depois da limpeza",
    "falta de ar condicionado na sala de espera",
    "estou com o nariz entupido e não consigo respirar pelo nariz",
    "minha filha tem convulsões desde pequena, quero marcar dentista",
    "ele tem epilepsia",
    "quero marcar uma consulta de retorno pós AVC",
    "estou morrendo de medo da extração",
    "quase morri de vergonha",
    "vou matar a saudade",
    "vc é um anjo",
    "seu atendimento é ótimo",
    "quero falar com o dentista sobre o orçamento",
    "vou ligar amanhã",
    "para quando tem vaga?",
    "para o dia 12",
    "não quero mais a consulta",
    "parei de receber os lembretes",
    "é grave se eu faltar?",
    "posso tomar banho depois da extração?",
    "qual remédio a doutora passou?",
    "tenho alergia a dipirona",
    "o que significa profilaxia?",
    "meu exame de sangue ficou pronto, posso levar?",
    "sofri um acidente, meu dente quebrou",
    "o sistema apagou minha consulta?",
    "me ligaram ontem da clínica",
]


def kind_of(text: str) -> GuardKind | None:
    guard = check(text, clinic_name=CLINIC)
    return guard.kind if guard else None


@pytest.mark.parametrize("text", EMERGENCIES)
def test_it_flags_medical_red_flags_as_an_emergency(text):
    assert kind_of(text) is E


@pytest.mark.parametrize("text", SUICIDAL)
def test_it_flags_suicidal_talk(text):
    assert kind_of(text) is S


@pytest.mark.parametrize("text", HUMANS)
def test_it_hands_over_when_the_patient_asks_for_a_person(text):
    assert kind_of(text) is H


@pytest.mark.parametrize("text", OPT_OUTS)
def test_it_recognises_a_patient_who_opts_out(text):
    assert kind_of(text) is O


@pytest.mark.parametrize("text", ABUSES)
def test_it_recognises_insults_aimed_at_the_clinic_or_assistant(text):
    assert kind_of(text) is A


@pytest.mark.parametrize("text", MEDICAL)
def test_it_recognises_requests_for_medical_advice(text):
    assert kind_of(text) is M


@pytest.mark.parametrize("text", ORDINARY)
def test_it_leaves_ordinary_clinic_messages_to_the_engine(text):
    assert kind_of(text) is None


def test_the_table_is_big_enough_to_mean_something():
    total = len(EMERGENCIES + SUICIDAL + HUMANS + OPT_OUTS + ABUSES + MEDICAL + ORDINARY)
    assert total >= 200


# --- precedence ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("quero morrer, estou com dor no peito", S),
        ("estou com falta de ar, quero falar com um atendente", E),
        ("dor no peito. parar", E),
        ("quero falar com uma pessoa e não quero mais receber mensagens", H),
        ("seu robô idiota, não quero mais receber mensagens", O),
        ("robô burro, posso tomar dipirona?", A),
        ("sua burra, me passa pra um atendente", H),
        ("posso tomar dipirona? estou com falta de ar", E),
        ("estou com dor no peito, não quero morrer", E),
        ("não quero mais receber mensagens, sua clínica de merda", O),
    ],
)
def test_the_most_serious_match_wins(text, expected):
    assert kind_of(text) is expected


def test_precedence_is_suicide_emergency_human_opt_out_abuse_medical():
    assert PRECEDENCE == (S, E, H, O, A, M)


# --- what the patient and staff see ----------------------------------------------------------------------------------


def test_an_emergency_reply_sends_to_samu_names_the_clinic_and_alerts_staff():
    guard = check("meu pai está com dor no peito", clinic_name=CLINIC, clinic_phone="(11) 3333-4444")
    assert isinstance(guard, Guard)
    assert "*SAMU 192*" in guard.reply
    assert "pronto-socorro" in guard.reply
    assert "Clínica Sorriso" in guard.reply
    assert "(11) 3333-4444" in guard.reply
    assert guard.alert_staff and guard.stop_assistant
    assert guard.summary == "Emergency red flag: chest pain"


def test_the_clinic_phone_line_is_left_out_when_the_clinic_has_none():
    guard = check("falta de ar", clinic_name=CLINIC)
    assert "Telefone" not in guard.reply
    assert guard.reply.endswith("Já avisei a equipe *Clínica Sorriso*.")


def test_a_suicide_reply_gives_cvv_188_and_samu_192_and_alerts_staff():
    guard = check("não aguento mais viver", clinic_name=CLINIC)
    assert "188" in guard.reply and "CVV" in guard.reply and "cvv.org.br" in guard.reply
    assert "24 horas" in guard.reply and "gratuita" in guard.reply
    assert "SAMU 192" in guard.reply
    assert "Clínica Sorriso" in guard.reply
    assert guard.alert_staff and guard.stop_assistant


def test_a_request_for_a_person_hands_over_to_staff():
    guard = check("quero falar com um atendente", clinic_name=CLINIC)
    assert guard.reply.startswith("Claro!")
    assert "Clínica Sorriso" in guard.reply and "assim que possível" in guard.reply
    assert guard.alert_staff and guard.stop_assistant


def test_an_opt_out_confirms_says_how_to_come_back_and_silences_the_assistant_without_an_alert():
    guard = check("parar", clinic_name=CLINIC)
    assert "mensagens automáticas" in guard.reply and "lembretes" in guard.reply
    assert "*voltar*" in guard.reply
    assert "Clínica Sorriso" in guard.reply
    assert guard.stop_assistant and not guard.alert_staff


def test_abuse_gets_a_calm_boundary_and_goes_to_staff():
    guard = check("robô inútil", clinic_name=CLINIC)
    assert "respeito" in guard.reply and "Clínica Sorriso" in guard.reply
    assert guard.alert_staff and guard.stop_assistant


def test_a_medical_question_is_declined_with_an_offer_to_book_and_the_conversation_goes_on():
    guard = check("posso tomar ibuprofeno?", clinic_name=CLINIC)
    assert "orientação médica" in guard.reply
    assert "Quer que eu veja um horário" in guard.reply
    assert not guard.alert_staff and not guard.stop_assistant


@pytest.mark.parametrize("kind", list(GuardKind))
def test_no_reply_diagnoses_or_prescribes(kind):
    reply = reply_for(kind, clinic_name=CLINIC, clinic_phone="11 99999-0000").lower()
    for word in ("infarto", "avc", "derrame", "você tem", "você está com", "tome ", "tomar ", "mg", "dipirona"):
        assert word not in reply, (kind, word)


@pytest.mark.parametrize("kind", list(GuardKind))
def test_every_reply_names_the_clinic_and_survives_formatting_characters_in_its_name(kind):
    reply = reply_for(kind, clinic_name="Odonto *Bem*_Estar", clinic_phone="")
    assert "*Odonto Bem Estar*" in reply


@pytest.mark.parametrize("kind", list(GuardKind))
def test_every_reply_reads_well_without_a_clinic_name(kind):
    reply = reply_for(kind, clinic_name="", clinic_phone="")
    assert "**" not in reply and "equipe" in reply


def test_the_staff_summary_never_repeats_the_message():
    text = "Maria Souza aqui, estou com dor no peito desde as 3h"
    guard = check(text, clinic_name=CLINIC)
    assert "Maria" not in guard.summary and "3h" not in guard.summary


def test_detect_gives_the_kind_and_the_label():
    assert detect("tô sem ar") == (E, "Emergency red flag: shortness of breath")
    assert detect("bom dia") is None


# --- normalising -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Não consigo RESPIRAR!!", "nao consigo respirar"),
        ("ñ tô conseguindo", "n estou conseguindo"),
        ("Dooooor no peitooo", "dor no peito"),
        ("vc é robô?", "voce e robo ?"),
        ("A.V.C.", "a v c"),
        ("convulsaõ", "convulsao"),
        ("respirrar", "respirar"),
        ("resprar", "respirar"),
    ],
)
def test_normalise_reads_whatsapp_portuguese(raw, normalised):
    assert normalize(raw) == normalised


# --- never raises ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("junk", [None, 42, b"dor no peito", "", "   ", "\x00\x01", "🙂" * 5000, "?" * 10_000])
def test_it_returns_none_for_junk_and_never_raises(junk):
    assert check(junk, clinic_name=CLINIC) is None  # type: ignore[arg-type]


def test_it_never_raises_on_random_text():
    rng = random.Random(5)
    alphabet = string.printable + "áàâãéêíóôõúçñÁÉÍÓÚÇ🙂😡💔\u200b\u202e\ufeff"
    words = ["dor", "no", "peito", "não", "sem", "ar", "parar", "atendente", "?", "vc", "é", "morrer", "AVC", ","]
    for _ in range(1500):
        if rng.random() < 0.5:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        else:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))
        guard = check(text, clinic_name=CLINIC)
        assert guard is None or isinstance(guard, Guard)


def test_a_red_flag_in_a_long_burst_is_still_found():
    burst = "oi tudo bem, queria marcar uma consulta. " * 200 + "ah e meu pai está com dor no peito agora"
    assert kind_of(burst) is E


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("não estou com falta de ar", None),  # explicit negation right before the symptom
        ("não sei se é falta de ar", E),  # unsure is flagged
        ("acho que não é nada, mas tô com dor no peito", E),
        ("minha mãe teve AVC ano passado", None),  # told as history
        ("meu pai teve AVC", E),  # no time: may be now
        ("tive um derrame em 2019 e agora a boca ficou torta", E),  # history, and now
        ("meu avô morreu de infarto, quero fazer um check-up", None),
    ],
)
def test_negation_and_history_are_read_in_favour_of_safety(text, expected):
    assert kind_of(text) is expected
